"""The installable app in a real browser (Debian's Chromium through Caddy with basic auth, at a phone's size): the
manifest and its icons, the service worker (web/sw.js) that keeps the shell in a cache of its version and never an
API answer, the app opened from that cache with the server down (it says offline, then comes back by itself), a new
version taking over on the next open without a page mixing versions, push messages shown (quiet while that chat is
open and focused) and a tap opening the chat, and the notification settings on Resources in each state.

The stack of this module is its own (it is stopped and restarted on the same port, so the browser's origin, and its
service worker, stay the same), serving a copy of web/ that the version test changes. The push and settings tests
use the session's shared stack. No push service is reachable here: a push message is delivered to the worker by the
browser's DevTools protocol, and the settings' enabled state uses a stand-in for the browser's PushManager (the
server behind it is real); tests/test_notifications.py checks real delivery against a stand-in push service."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import WEB_REPOS, Origin, free_port, wait_until
from tests.support.fake_llm import FakeLLM
from tests.support.push_service import PushService, unb64url
from tests.test_stack import PASSWORD, USER, RunningStack, new_chat, start_stack, stop
from tests.test_web import WEB, Phone, close, new_phone

CACHE_PREFIX = "mecodes-shell-"
API_PREFIXES = ("/admin", "/session", "/event", "/global", "/file", "/find", "/project", "/config", "/provider")
# The browser's notes about requests while the server stops, is down and starts again (its login gate asks the
# requests that come while it checks the password to retry in a second): the page's own words are what is checked.
RESTART_NOISE = ("net::ERR_CONNECTION_REFUSED", "net::ERR_INCOMPLETE_CHUNKED_ENCODING", "status of 503")

CACHE_KEYS = """async () => {
  const out = {};
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    out[name] = (await cache.keys()).map((request) => new URL(request.url).pathname);
  }
  return out;
}"""
CONTROLLED = "() => navigator.serviceWorker.controller !== null"


def web_version(root: Path) -> str:
    """What bin/start computes: sha256sum's lines for every file (sorted by path), hashed."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    lines = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(root)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def shell_paths(root: Path) -> set[str]:
    """Every file of web/ the worker must keep: all but itself, index.html as `/`."""
    paths = {f"/{p.relative_to(root)}" for p in root.rglob("*") if p.is_file()} - {"/sw.js", "/index.html"}
    return paths | {"/"}


def public(stack: RunningStack, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET without credentials: what a home screen or the browser's manifest fetch sees."""
    with urllib.request.urlopen(f"{stack.base}{path}", timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@dataclass
class Server:
    """This module's stack, stopped and started again on the same port."""

    tmp: Path
    origin: Origin
    llm_url: str
    web: Path
    port: str

    stack: RunningStack | None = None

    def start(self) -> None:
        # Push endpoints may be plain http to this machine: the stand-in push service.
        env = {"MECODES_WEB_ROOT": str(self.web), "MECODES_HTTP_PORT": self.port, "MECODES_PUSH_LOOPBACK": "on"}
        self.stack = start_stack(self.tmp, self.origin, self.llm_url, **env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, origin: Origin, web_llm: FakeLLM) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("webpwa")
    shutil.copytree(WEB, tmp / "web")
    running = Server(tmp, origin, web_llm.url, tmp / "web", str(free_port()))
    running.start()
    yield running
    stop(running.stack)


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    with PushService() as service:
        yield service


def open_controlled(phone: Phone, route: str = "#/chats") -> None:
    phone.go(route)
    phone.page.wait_for_function(CONTROLLED)


def allow_restart(phone: Phone) -> None:
    """The server was stopped and started on purpose: the browser's notes about it are expected."""
    phone.console.errors[:] = [e for e in phone.console.errors if not any(n in e for n in RESTART_NOISE)]


# ---- install


def test_the_manifest_is_valid_and_the_worker_controls_the_page(browser: Browser, server: Server) -> None:
    stack = server.stack
    status, headers, raw = public(stack, "/manifest.webmanifest")
    assert status == 200 and headers["Content-Type"] == "application/manifest+json"
    manifest = json.loads(raw)
    assert manifest["name"] == "mecodes" and manifest["short_name"] and manifest["description"]
    assert (manifest["start_url"], manifest["scope"], manifest["id"], manifest["display"]) == (
        "/",
        "/",
        "/",
        "standalone",
    )
    style = (WEB / "style.css").read_text()
    assert manifest["theme_color"] == re.search(r"--accent: (#\w+)", style)[1]
    assert manifest["background_color"] == re.search(r"--bg: (#\w+)", style)[1]
    html = (WEB / "index.html").read_text()
    assert f'<meta name="theme-color" content="{manifest["theme_color"]}">' in html
    icons = manifest["icons"] + [{"src": "/icons/apple-touch-icon.png", "sizes": "180x180", "type": "image/png"}]
    assert {(i["sizes"], i.get("purpose", "any")) for i in icons} >= {
        ("192x192", "any"),
        ("512x512", "any"),
        ("512x512", "maskable"),
        ("180x180", "any"),
    }
    for icon in icons:
        status, headers, raw = public(stack, icon["src"])
        assert status == 200 and headers["Content-Type"] == icon["type"] == "image/png"
        width, height = png_size(raw)
        assert f"{width}x{height}" == icon["sizes"], icon
    # Everything else still asks for the password.
    with pytest.raises(urllib.error.HTTPError) as refused:
        public(stack, "/sw.js")
    assert refused.value.code == 401

    status, sw = stack.request("GET", "/sw.js")
    assert status == 200 and f"const VERSION = '{web_version(server.web)}';" in sw and "{{" not in sw
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"{stack.base}/sw.js", headers={"Authorization": f"Basic {auth}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert response.headers["Cache-Control"] == "no-cache"

    phone = new_phone(browser, stack)
    page = phone.page
    open_controlled(phone)
    expect(page.get_by_role("heading", name="Chats", level=1)).to_be_visible()
    assert page.evaluate("document.querySelector('link[rel=manifest]').href") == f"{stack.base}/manifest.webmanifest"
    assert page.evaluate("document.querySelector('link[rel=apple-touch-icon]').href").endswith("/apple-touch-icon.png")
    registration = page.evaluate(
        "navigator.serviceWorker.ready.then((r) => ({scope: r.scope, script: r.active.scriptURL}))"
    )
    assert registration == {"scope": f"{stack.base}/", "script": f"{stack.base}/sw.js"}
    caches = page.evaluate(CACHE_KEYS)
    assert list(caches) == [f"{CACHE_PREFIX}{web_version(server.web)}"]
    assert set(next(iter(caches.values()))) == shell_paths(server.web), "sw.js's SHELL must list every file of web/"
    phone.shot("pwa-installed")
    close(phone, "pwa-installed")


# ---- offline


def test_with_the_server_down_the_cached_app_says_offline_and_comes_back(browser: Browser, server: Server) -> None:
    phone = new_phone(browser, server.stack)
    page = phone.page
    open_controlled(phone)
    expect(page.get_by_role("heading", name="Chats", level=1)).to_be_visible()
    page.get_by_role("link", name="Resources").click()
    expect(page.locator("#disk .diskbar")).to_be_visible()

    stop(server.stack)
    page.reload()
    expect(page.get_by_role("heading", name="Offline", level=1)).to_be_visible()
    expect(page.get_by_text("The server can't be reached.")).to_be_visible()
    assert page.title() == "Offline · mecodes"
    assert page.locator(".error").count() == 0, "no view shows an error of its own"
    phone.shot("pwa-offline")
    phone.fits_narrow_screen("pwa-offline")
    page.get_by_role("link", name="Chats", exact=True).click()  # another page: the same one sentence
    expect(page.get_by_role("heading", name="Offline", level=1)).to_be_visible()

    server.start()  # same port: the page finds the server again by itself
    expect(page.get_by_role("heading", name="Chats", level=1)).to_be_visible(timeout=60_000)
    expect(page.locator(".list, .empty").first).to_be_visible()
    page.get_by_role("link", name="Resources").click()
    expect(page.locator("#disk .diskbar")).to_be_visible()
    phone.shot("pwa-back-online")

    for name, paths in page.evaluate(CACHE_KEYS).items():
        assert name.startswith(CACHE_PREFIX)
        api = [p for p in paths if p in API_PREFIXES or p.startswith(tuple(f"{a}/" for a in API_PREFIXES))]
        assert not api, f"API answers cached in {name}: {api}"
        assert set(paths) == shell_paths(server.web)
    allow_restart(phone)
    close(phone, "pwa-offline")


# ---- push


def deliver_push(page: Page, payload: Any) -> None:
    """A push message to the page's service worker, as the push service would bring it (DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    origin = page.evaluate("location.origin")

    def ours() -> list[dict[str, Any]]:
        return [r for r in registrations if r["scopeURL"] == f"{origin}/" and not r["isDeleted"]]

    # Playwright hands the session's events over while it talks to the browser: a short wait in the page lets it.
    wait_until(lambda: ours() or page.wait_for_timeout(50), 30, "the service worker's registration")
    data = payload if isinstance(payload, str) else json.dumps(payload)
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin, "registrationId": ours()[0]["registrationId"], "data": data},
    )
    cdp.detach()


NOTIFICATIONS = """() => navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((list) =>
  list.map((n) => ({title: n.title, body: n.body, tag: n.tag, url: n.data && n.data.url, icon: n.icon})))"""

CLICK = """async (tag) => {
  const [notification] = await self.registration.getNotifications({ tag });
  const event = new NotificationEvent('notificationclick', { notification });
  const pending = [];  // a dispatched event has no waitUntil of its own: the test keeps its promises
  Object.defineProperty(event, 'waitUntil', { value: (promise) => pending.push(promise) });
  self.dispatchEvent(event);
  await Promise.all(pending);
  return (await self.registration.getNotifications({ tag })).length;
}"""


def payload(chat: dict[str, Any], kind: str, body: str) -> dict[str, Any]:
    sid = chat["session_id"]
    return {
        "kind": kind,
        "title": "Fix the login",
        "body": body,
        "url": f"/#/chat/{sid}",
        "session_id": sid,
        "tag": f"mecodes-{sid}",
    }


@pytest.fixture
def push_phone(browser: Browser, web_stack: RunningStack, request: pytest.FixtureRequest) -> Iterator[Phone]:
    phone = new_phone(browser, web_stack)
    phone.page.context.grant_permissions(["notifications"], origin=web_stack.base)
    yield phone
    close(phone, request.node.name)


def test_a_push_shows_the_chat_and_a_tap_opens_it_but_not_while_it_is_open(
    push_phone: Phone, web_stack: RunningStack
) -> None:
    page = push_phone.page
    chat, other = new_chat(web_stack, WEB_REPOS[0]), new_chat(web_stack, WEB_REPOS[0])
    open_controlled(push_phone, f"#/chat/{chat['session_id']}")
    expect(page.locator("h1")).to_be_visible()
    assert page.evaluate("document.hasFocus()")

    # The chat is open and focused on this device: its push is quiet; another chat's shows.
    deliver_push(page, payload(chat, "finished", "quiet: the chat is open"))
    deliver_push(page, payload(other, "needs-input", "Which branch should I use?"))
    shown = wait_until(lambda: page.evaluate(NOTIFICATIONS), 30, "a notification")
    assert shown == [
        {
            "title": "Fix the login",
            "body": "Which branch should I use?",
            "tag": f"mecodes-{other['session_id']}",
            "url": f"/#/chat/{other['session_id']}",
            "icon": f"{web_stack.base}/icons/icon-192.png",
        }
    ]

    # Elsewhere in the app, the first chat's next event shows; tapping it opens that chat in this page.
    page.get_by_role("link", name="Chats", exact=True).click()
    expect(page.get_by_role("heading", name="Chats", level=1)).to_be_visible()
    deliver_push(page, payload(chat, "finished", "Done: the login is fixed."))
    tag = f"mecodes-{chat['session_id']}"
    wait_until(lambda: any(n["tag"] == tag for n in page.evaluate(NOTIFICATIONS)), 30, "the chat's notification")
    assert [n["body"] for n in page.evaluate(NOTIFICATIONS) if n["tag"] == tag] == ["Done: the login is fixed."]
    worker = page.context.service_workers[0]
    assert worker.evaluate(CLICK, tag) == 0  # closed once tapped
    expect(page).to_have_url(re.compile(f"#/chat/{chat['session_id']}$"))
    expect(page.locator(".composer textarea, textarea").first).to_be_visible()
    push_phone.shot("pwa-push-opened")

    # Not JSON: a plain notification all the same, never an error.
    deliver_push(page, "plain text from somewhere")
    wait_until(
        lambda: [n for n in page.evaluate(NOTIFICATIONS) if n["body"] == "plain text from somewhere"],
        30,
        "the plain notification",
    )
    assert [n["title"] for n in page.evaluate(NOTIFICATIONS) if n["body"] == "plain text from somewhere"] == ["mecodes"]


# ---- the settings on Resources

# The browser's side of a push subscription, standing in for the push service Chromium cannot reach here: subscribe()
# answers the subscription the test made with the stand-in push service (its keys are the test's, so the test can
# read what is pushed), kept in localStorage as a browser keeps its own.
PUSH_MANAGER = """(subscription) => {
  const saved = 'test.pushSubscription';
  const make = (json) => ({ endpoint: json.endpoint, toJSON: () => json, unsubscribe: async () => {
    localStorage.removeItem(saved);
    return true;
  } });
  PushManager.prototype.subscribe = async function (options) {
    window.__serverKey = Array.from(options.applicationServerKey);
    if (!options.userVisibleOnly) throw new DOMException('userVisibleOnly is required', 'NotAllowedError');
    localStorage.setItem(saved, JSON.stringify(subscription));
    return make(subscription);
  };
  PushManager.prototype.getSubscription = async function () {
    const json = localStorage.getItem(saved);
    return json ? make(JSON.parse(json)) : null;
  };
}"""


def section(page: Page):
    return page.locator("#notifications")


def devices(stack: RunningStack) -> list[dict[str, Any]]:
    status, body = stack.request("GET", "/admin/notifications/subscriptions")
    assert status == 200, body
    return body["subscriptions"]


def test_notifications_enabled_tested_and_disabled_from_resources(
    browser: Browser, server: Server, push_service: PushService
) -> None:
    stack = server.stack
    subscription, _ = push_service.subscription("ui")
    phone = new_phone(browser, stack)
    page = phone.page
    page.context.grant_permissions(["notifications"], origin=stack.base)
    page.context.add_init_script(f"({PUSH_MANAGER})({json.dumps(subscription)})")
    open_controlled(phone, "#/resources")
    notifications = section(page)
    expect(notifications.get_by_text("This device is not told about chats yet.")).to_be_visible()
    expect(notifications.get_by_label("Name of this device")).to_have_value(re.compile(r"^Chrome on "))
    expect(notifications.get_by_text("No device is registered.")).to_be_visible()
    phone.shot("notifications-off")
    phone.fits_narrow_screen("notifications-off")

    notifications.get_by_label("Name of this device").fill("Test phone")
    notifications.get_by_label("A turn was interrupted").uncheck()
    notifications.get_by_role("button", name="Enable on this device").click()
    expect(notifications.get_by_text("Enabled.")).to_be_visible()
    key = stack.request("GET", "/admin/notifications/key")[1]["public_key"]
    assert bytes(page.evaluate("window.__serverKey")) == unb64url(key)
    [device] = devices(stack)
    assert (device["name"], device["events"]) == ("Test phone", ["finished", "failed", "needs-input"])
    item = notifications.locator(f'[data-device="{device["id"]}"]')
    expect(item).to_contain_text("this device")
    expect(item).to_contain_text("via 127.0.0.1")

    notifications.get_by_label("A chat needs an answer").uncheck()
    expect(notifications.get_by_text("Saved.")).to_be_visible()
    wait_until(lambda: devices(stack)[0]["events"] == ["finished", "failed"], 10, "the events saved")

    # The test notification: the worker pushes it (encrypted, signed) to the stand-in push service, and what
    # arrives there, delivered to this page's worker, shows.
    notifications.get_by_role("button", name="Send me a test notification").click()
    expect(notifications.get_by_text("Sent: it should show on this device in a moment.")).to_be_visible(timeout=30_000)
    [pushed] = push_service.payloads("ui")
    assert (pushed["kind"], pushed["tag"], pushed["url"]) == ("test", "mecodes-test", "/#/chats")
    sent = notifications.locator(".notify-sent .item").first
    expect(sent).to_contain_text("sent to Test phone")
    deliver_push(page, pushed)
    shown = wait_until(lambda: page.evaluate(NOTIFICATIONS), 30, "the test notification")
    assert [(n["title"], n["body"], n["tag"]) for n in shown] == [(pushed["title"], pushed["body"], "mecodes-test")]
    phone.shot("notifications-on")
    phone.fits_narrow_screen("notifications-on")

    # The push service has forgotten this device: the next push removes it, and Resources says so.
    push_service.answer("ui", 410)
    notifications.get_by_role("button", name="Send me a test notification").click()
    expect(notifications.get_by_text("Not delivered: Test phone: gone")).to_be_visible(timeout=30_000)
    expect(notifications.locator(".notify-sent .item").first).to_contain_text("gone (the push service forgot it)")
    assert devices(stack) == []
    expect(notifications.get_by_role("button", name="Enable on this device")).to_be_visible()
    phone.shot("notifications-gone")

    # Enabled again, then disabled: the device goes, and the browser's subscription with it.
    notifications.get_by_role("button", name="Enable on this device").click()
    expect(notifications.get_by_role("button", name="Disable on this device")).to_be_visible()
    assert len(devices(stack)) == 1
    notifications.get_by_role("button", name="Disable on this device").click()
    expect(notifications.get_by_text("Disabled: this device is no longer told.")).to_be_visible()
    assert devices(stack) == []
    assert page.evaluate("localStorage.getItem('test.pushSubscription')") is None
    expect(notifications.get_by_text("No device is registered.")).to_be_visible()
    close(phone, "notifications-enabled")


IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Mobile/15E148 Safari/604.1"
)


def test_notifications_say_plainly_what_this_browser_cannot_do(browser: Browser, server: Server) -> None:
    stack = server.stack

    # Headless Chromium has no push service: subscribing fails, and the section says what to do.
    phone = new_phone(browser, stack)
    phone.page.context.grant_permissions(["notifications"], origin=stack.base)
    open_controlled(phone, "#/resources")
    section(phone.page).get_by_role("button", name="Enable on this device").click()
    cannot = section(phone.page).locator(".notify-cannot")
    expect(cannot).to_contain_text("This browser could not subscribe to its push service")
    assert devices(stack) == []
    phone.shot("notifications-cannot-subscribe")
    phone.fits_narrow_screen("notifications-cannot-subscribe")
    # Chromium's own note: a browser context of Playwright's is a private window, where Chrome has no Push API.
    phone.console.errors[:] = [e for e in phone.console.errors if "not support the Push API in incognito" not in e]
    close(phone, "notifications-cannot-subscribe")

    # Blocked in the browser's settings.
    phone = new_phone(browser, stack)
    cdp = phone.page.context.new_cdp_session(phone.page)
    context_id = cdp.send("Target.getTargetInfo")["targetInfo"]["browserContextId"]
    cdp.detach()
    browser_cdp = browser.new_browser_cdp_session()
    permission = {"permission": {"name": "notifications"}, "setting": "denied", "origin": stack.base}
    browser_cdp.send("Browser.setPermission", {**permission, "browserContextId": context_id})  # until detached
    open_controlled(phone, "#/resources")
    expect(section(phone.page).locator(".notify-cannot")).to_contain_text("Notifications are blocked for this site")
    expect(section(phone.page).get_by_role("button", name="Enable on this device")).to_have_count(0)
    phone.shot("notifications-blocked")
    close(phone, "notifications-blocked")
    browser_cdp.detach()

    # An iPhone's Safari, not installed to the home screen (no PushManager there).
    phone = new_phone(browser, stack)
    phone.page.context.new_cdp_session(phone.page).send("Emulation.setUserAgentOverride", {"userAgent": IPHONE})
    phone.go("#/resources")
    expect(section(phone.page).locator(".notify-cannot")).to_contain_text("Add to Home Screen")
    phone.shot("notifications-iphone")
    phone.fits_narrow_screen("notifications-iphone")
    close(phone, "notifications-iphone")

    # A browser without Web Push at all.
    phone = new_phone(browser, stack)
    phone.page.context.add_init_script("delete window.PushManager")
    phone.go("#/resources")
    expect(section(phone.page).locator(".notify-cannot")).to_contain_text("This browser cannot receive push")
    phone.shot("notifications-unsupported")
    close(phone, "notifications-unsupported")


# ---- a new version


MARK_JS = "\nglobalThis.__shell2 = [...(globalThis.__shell2 || []), import.meta.url];\n"
LOADED_MODULES = """() => performance.getEntriesByType('resource').map((e) => e.name)
  .filter((name) => /\\.m?js$/.test(name) && !name.endsWith('/sw.js'))"""


def version_of(page: Page) -> str:
    """'old' or 'new' when every module, the style sheet and the page come from one version; else what mixed."""
    seen = page.evaluate(
        """(modules) => ({
          marked: globalThis.__shell2 || [],
          modules,
          css: getComputedStyle(document.documentElement).getPropertyValue('--shell').trim(),
          html: document.querySelector('meta[name=shell]')?.content || '',
        })""",
        page.evaluate(LOADED_MODULES),
    )
    assert seen["modules"], "no module loaded?"
    marks = {url in seen["marked"] for url in seen["modules"]} | {seen["css"] == "2", seen["html"] == "2"}
    assert len(marks) == 1, f"a page mixing versions: {seen}"
    return "new" if marks == {True} else "old"


def change_every_file(web: Path) -> None:
    for path in web.rglob("*"):
        if path.suffix in (".js", ".mjs") and path.name != "sw.js":
            path.write_text(path.read_text() + MARK_JS)
    (web / "style.css").write_text((web / "style.css").read_text() + "\n:root { --shell: 2; }\n")
    html = (web / "index.html").read_text()
    (web / "index.html").write_text(html.replace("<title>", '<meta name="shell" content="2">\n<title>'))


def test_a_new_version_takes_over_on_the_next_open_and_a_page_never_mixes(browser: Browser, server: Server) -> None:
    first = new_phone(browser, server.stack)
    context = first.page.context
    open_controlled(first)
    expect(first.page.get_by_role("heading", name="Chats", level=1)).to_be_visible()
    assert version_of(first.page) == "old"
    old_cache = f"{CACHE_PREFIX}{web_version(server.web)}"

    stop(server.stack)
    change_every_file(server.web)
    new_cache = f"{CACHE_PREFIX}{web_version(server.web)}"
    assert new_cache != old_cache
    server.start()

    # A second page while the first runs: the old worker serves it, whole, and the new one installs and waits.
    second = context.new_page()
    second.on("console", first.console.on_console)
    second.goto(f"{server.stack.base}/#/chats")
    expect(second.get_by_role("heading", name="Chats", level=1)).to_be_visible()
    assert version_of(second) == "old"
    waiting = "navigator.serviceWorker.getRegistration().then((r) => Boolean(r && r.waiting))"
    wait_until(lambda: second.evaluate(waiting), 30, "the new worker installed, waiting")
    assert set(second.evaluate(CACHE_KEYS)) == {old_cache, new_cache}
    second.reload()  # not alone: it stays on the old version
    expect(second.get_by_role("heading", name="Chats", level=1)).to_be_visible()
    assert version_of(second) == "old"
    first.shot("pwa-old-version")

    # Alone, the next open takes the new version before rendering (one reload), entirely.
    first.page.close()
    second.reload()
    expect(second.locator('meta[name="shell"]')).to_have_count(1)
    expect(second.get_by_role("heading", name="Chats", level=1)).to_be_visible()
    second.wait_for_function(CONTROLLED)
    assert version_of(second) == "new"
    assert second.evaluate("navigator.serviceWorker.getRegistration().then((r) => !r.waiting)")
    wait_until(lambda: list(second.evaluate(CACHE_KEYS)) == [new_cache], 10, "the old cache deleted")
    third = context.new_page()
    third.goto(f"{server.stack.base}/#/resources")
    expect(third.get_by_role("heading", name="Resources", level=1)).to_be_visible()
    assert version_of(third) == "new"
    first.page = second
    allow_restart(first)  # the first page's requests while the server was down
    close(first, "pwa-new-version")
