"""The web app in a real browser: Debian's headless Chromium, driven by Playwright, against the production stack
(bin/start: Caddy with basic auth, sidecar, worker, Redis, `opencode serve`) at a phone's viewport (390 by 844).

No LLM is reachable here: opencode's model is a stand-in (tests/support/fake_llm.py) that answers for real over
opencode's own event stream (echoing, failing, running a command, or holding the stream open). The rendering of
every part kind and the catch-up after a dropped stream are driven by recorded events through a small EventSource
stand-in instead, so the test decides exactly what the page receives and when.
Every test asserts that the console stayed free of errors and that no screen overflows at 360 px. Screenshots of
each screen go to test-artifacts/web/ (git-ignored)."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.conftest import ROOT, WEB_OWNER, WEB_REPOS, Origin, git, wait_until
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM
from tests.support.githttp import GitHttpServer
from tests.test_processes import spawn_orphan
from tests.test_stack import PASSWORD, USER, RunningStack, new_chat, prompt_via_api, service_pid

PHONE = {"width": 390, "height": 844}
NARROW = 360
ARTIFACTS = ROOT / "test-artifacts" / "web"
WEB = ROOT / "web"
REPOS = WEB_REPOS

# An EventSource stand-in: the test decides what the page receives (window.__sse.feed / drop).
SSE_SHIM = """
(() => {
  const sources = [];
  class RecordedEventSource extends EventTarget {
    constructor(url) {
      super();
      this.url = new URL(url, location.href).toString();
      this.readyState = 0;
      this.onmessage = this.onerror = this.onopen = null;
      sources.push(this);
    }
    close() { this.readyState = 2; }
    emit(type, init) {
      const event = type === 'message' ? new MessageEvent('message', init) : new Event(type);
      this.dispatchEvent(event);
      if (this['on' + type]) this['on' + type](event);
    }
  }
  window.EventSource = RecordedEventSource;
  window.__sse = {
    count: (part) => sources.filter((s) => s.url.includes(part)).length,
    open: (part) => sources.filter((s) => s.readyState !== 2 && s.url.includes(part)),
    feed(part, events) {
      const open = this.open(part);
      for (const source of open) {
        source.readyState = 1;
        for (const event of events) source.emit('message', { data: JSON.stringify(event) });
      }
      return open.length;
    },
    drop(part) { for (const source of this.open(part)) source.emit('error'); },
  };
})();
"""


# WCAG contrast of every visible text against the background it is drawn on (disabled controls are exempt).
CONTRAST_PROBLEMS = """
() => {
  const rgba = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => {
    const lin = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const [r, g, b, a = 1] = rgba(getComputedStyle(node).backgroundColor);
      if (a > 0.5) return [r, g, b];
    }
    return [255, 255, 255];
  };
  const problems = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || !el || !el.checkVisibility()) continue;
    if (el.closest(':disabled, [aria-busy="true"], .visually-hidden')) continue;
    const style = getComputedStyle(el);
    const [l1, l2] = [luminance(rgba(style.color)), luminance(background(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio >= (large ? 3 : 4.5)) continue;
    problems.push(`${ratio.toFixed(2)}: ${el.tagName} ${el.textContent.trim().slice(0, 40)}`);
  }
  return problems;
}
"""


@dataclass
class Console:
    """Errors the page logged or threw; `expect_failure` allows the browser's own note about one HTTP status."""

    errors: list[str] = field(default_factory=list)
    allowed: list[tuple[int, str]] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        for status, part in self.allowed:
            if f"status of {status}" in message.text and part in url:
                return
        self.errors.append(f"{message.text} ({url})")

    def expect_failure(self, status: int, url_part: str) -> None:
        self.allowed.append((status, url_part))


@dataclass
class Phone:
    page: Page
    console: Console
    stack: RunningStack

    def go(self, route: str) -> None:
        self.page.goto(f"{self.stack.base}/{route}")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def fits_narrow_screen(self, name: str) -> None:
        """No horizontal overflow at 360 px (nothing scrolls sideways), and every text readable (WCAG AA) in the
        light and the dark colour scheme."""
        self.page.set_viewport_size({"width": NARROW, "height": PHONE["height"]})
        try:
            self.page.wait_for_timeout(100)
            widths = self.page.evaluate(
                "() => [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"
            )
            assert max(widths[:2]) <= NARROW, f"{name} overflows at {NARROW} px: {widths}"
            self.shot(f"{name}-360")
            assert self.page.evaluate(CONTRAST_PROBLEMS) == [], f"{name}: text below WCAG AA contrast"
            self.page.emulate_media(color_scheme="dark")
            assert self.page.evaluate(CONTRAST_PROBLEMS) == [], f"{name}, dark: text below WCAG AA contrast"
        finally:
            self.page.emulate_media(color_scheme="light")
            self.page.set_viewport_size(PHONE)


# The session's web stack (tests/conftest.py) under the names the browser tests use.


@pytest.fixture
def github(web_github: FakeGitHub) -> FakeGitHub:
    return web_github


@pytest.fixture
def llm(web_llm: FakeLLM) -> FakeLLM:
    return web_llm


@pytest.fixture
def git_server(web_git_server: GitHttpServer) -> GitHttpServer:
    return web_git_server


@pytest.fixture
def stack(web_stack: RunningStack) -> RunningStack:
    return web_stack


def new_phone(browser: Browser, stack: RunningStack, shim: bool = False) -> Phone:
    context = browser.new_context(viewport=PHONE, http_credentials={"username": USER, "password": PASSWORD})
    context.set_default_timeout(20_000)
    if shim:
        context.add_init_script(SSE_SHIM)
    page = context.new_page()
    console = Console()
    page.on("console", console.on_console)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    return Phone(page, console, stack)


def close(phone: Phone, name: str) -> None:
    """The last screen (for a failure's post-mortem), then the browser context; the console must be clean."""
    phone.shot(f"{name}-last")
    phone.page.context.close()
    assert phone.console.errors == []


@pytest.fixture
def phone(browser: Browser, stack: RunningStack, request: pytest.FixtureRequest) -> Iterator[Phone]:
    p = new_phone(browser, stack)
    yield p
    close(p, request.node.name)


@pytest.fixture
def shimmed_phone(browser: Browser, stack: RunningStack, request: pytest.FixtureRequest) -> Iterator[Phone]:
    p = new_phone(browser, stack, shim=True)
    yield p
    close(p, request.node.name)


def recorded(stack: RunningStack, chat: dict[str, Any], text: str) -> None:
    """Wait until opencode has recorded the user's message (prompt_async records it just after answering)."""
    query = urllib.parse.urlencode({"directory": chat["path"]})

    def texts() -> list[str]:
        status, messages = stack.request("GET", f"/session/{chat['session_id']}/message?{query}")
        assert status == 200, messages
        return [p.get("text") for m in messages if m["info"]["role"] == "user" for p in m["parts"]]

    wait_until(lambda: text in texts(), 30, f"opencode to record {text!r}")


def user_message(page: Page, text: str):
    return page.locator(".msg-user:not(.pending)", has_text=text)


# ---- the tests


def test_page_loads_fast_and_is_small(browser: Browser, stack: RunningStack) -> None:
    warm = new_phone(browser, stack)  # the stack's first answers after start-up are slow (opencode warms up)
    warm.go("#/chats")
    expect(warm.page.locator(".list, .empty").first).to_be_visible(timeout=30_000)
    close(warm, "warm-up")

    loads, listed = [], []
    for attempt in range(3):  # fresh browser profiles: nothing cached; the best of three discounts a busy machine
        phone = new_phone(browser, stack)
        phone.go("#/chats")
        expect(phone.page.get_by_role("heading", name="Chats", level=1)).to_be_visible()
        expect(phone.page.locator(".list, .empty").first).to_be_visible()
        listed.append(phone.page.evaluate("() => performance.now()"))
        loads.append(phone.page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd"))
        assert phone.page.title() == "Chats · mecodes"
        if attempt == 0:
            phone.fits_narrow_screen("chats-first-load")
        close(phone, "first-load")
    print(f"load event after {sorted(loads)} ms, chats listed after {sorted(listed)} ms")
    assert min(loads) < 1000
    vendor = WEB / "vendor"  # the markdown libraries: a chat's page loads them, when it shows a reply
    icons = WEB / "icons"  # the home screen's and the notifications' (12 KB), never the page's
    own = [f for f in WEB.rglob("*.*") if vendor not in f.parents and icons not in f.parents]
    shipped = {f.suffix: 0 for f in own}
    for f in own:
        shipped[f.suffix] += f.stat().st_size
    vendored = sum(f.stat().st_size for f in vendor.iterdir())
    print(f"web app bytes: {shipped}; vendored, loaded by a chat's page only: {vendored}")
    # 99 KB before issue 14, whose questions, pickers, images, Changes, formatting and cost bring it to about 139 KB;
    # issue 15's service worker, offline screen and notification settings to about 168 KB
    assert sum(shipped.values()) < 180_000
    assert vendored < 140_000  # marked 52 KB and DOMPurify 82 KB (16 and 21 KB gzipped), as npm ships them


def test_new_chat_from_the_picker_opens_and_takes_a_prompt(phone: Phone, stack: RunningStack) -> None:
    page = phone.page
    phone.go("#/new")
    pick = page.get_by_role("button", name=REPOS[0])
    expect(pick).to_be_visible()
    expect(page.get_by_role("button", name=REPOS[1])).to_contain_text("private")
    phone.shot("new-chat")
    phone.fits_narrow_screen("new-chat")

    pick.click()
    expect(page.locator("#repo")).to_have_value(REPOS[0])
    page.fill("#prompt", "Add a README\nthat explains the project")
    page.get_by_role("button", name="Start chat").click()
    expect(page.locator(".job-card")).to_be_visible()
    phone.shot("new-chat-progress")

    page.wait_for_url("**/#/chat/ses*", timeout=60_000)
    session_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", level=1)).to_have_text("Add a README")
    expect(user_message(page, "that explains the project")).to_be_visible()
    expect(page.locator(".chat-head")).to_contain_text(REPOS[0])
    expect(page.locator(".chat-head")).to_contain_text("mecodes/chat-")

    page.fill("#prompt", "Also add a licence file")
    page.get_by_role("button", name="Send").click()
    expect(user_message(page, "Also add a licence file")).to_be_visible()
    expect(page.locator("#prompt")).to_have_value("")
    phone.shot("chat")
    phone.fits_narrow_screen("chat")

    # The new chat is listed; a click opens it again.
    page.get_by_role("link", name="Chats", exact=True).click()
    item = page.locator(f'a[data-session="{session_id}"]')
    expect(item).to_contain_text("Add a README")
    expect(item).to_contain_text(REPOS[0])
    phone.shot("chats")
    phone.fits_narrow_screen("chats")
    item.click()
    expect(user_message(page, "Also add a licence file")).to_be_visible()
    # Nothing is left pending on the New chat page once the chat was opened.
    phone.go("#/new")
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(page.locator(".job-card")).to_have_count(0)


def test_keyboard_alone_starts_a_chat_for_a_repo_typed_by_hand(phone: Phone) -> None:
    page = phone.page
    phone.go("#/new")
    expect(page.get_by_role("button", name=REPOS[2])).to_be_visible()
    page.locator("#repo").focus()
    page.keyboard.type(f"https://github.com/{REPOS[2]}.git")
    page.keyboard.press("Tab")  # past the suggestion and the refresh link, to the branch and the task
    while page.evaluate("document.activeElement.id") != "prompt":
        page.keyboard.press("Tab")
    page.keyboard.type("Fix the typo")
    page.keyboard.press("Control+Enter")
    page.wait_for_url("**/#/chat/ses*", timeout=60_000)
    expect(page.locator(".chat-head")).to_contain_text(REPOS[2])
    expect(user_message(page, "Fix the typo")).to_be_visible()


def test_a_chat_that_cannot_be_set_up_says_why(phone: Phone) -> None:
    page = phone.page
    phone.go("#/new")
    page.fill("#repo", "not a repo")
    page.get_by_role("button", name="Start chat").click()
    expect(page.get_by_role("alert")).to_contain_text("owner/name")

    page.fill("#repo", f"{WEB_OWNER}/does-not-exist")
    page.fill("#prompt", "Anything")
    page.get_by_role("button", name="Start chat").click()
    card = page.locator(".job-card", has_text=f"{WEB_OWNER}/does-not-exist")
    expect(card.locator(".error")).to_contain_text("chat failed in phase repo", timeout=60_000)
    phone.shot("new-chat-failed")
    # Coming back later shows where it stands; dismissing forgets it.
    phone.go("#/chats")
    expect(page.locator(".notice")).to_contain_text("being set up")
    phone.go("#/new")
    expect(card.locator(".error")).to_contain_text("chat failed in phase repo")
    card.get_by_role("button", name="Dismiss").click()
    expect(card).to_have_count(0)


def test_live_stream_and_tabs_stay_consistent(browser: Browser, stack: RunningStack) -> None:
    chat = new_chat(stack, REPOS[1], prompt="First task")
    a, b = new_phone(browser, stack), new_phone(browser, stack)
    b_page = b.page.context.new_page()  # a second tab of the same browser as `b`
    b_page.on("console", b.console.on_console)
    try:
        a.go(f"#/chat/{chat['session_id']}")
        b.go(f"#/chat/{chat['session_id']}")
        expect(user_message(a.page, "First task")).to_be_visible()
        expect(user_message(b.page, "First task")).to_be_visible()

        # Sent from elsewhere: both pages get it live over SSE, without reloading.
        prompt_via_api(stack, chat, "Sent from another device")
        expect(user_message(a.page, "Sent from another device")).to_be_visible()
        expect(user_message(b.page, "Sent from another device")).to_be_visible()
        # Sent from one tab: the other shows it too.
        a.page.fill("#prompt", "WAIT: sent from tab A")
        a.page.keyboard.press("Control+Enter")
        expect(user_message(b.page, "WAIT: sent from tab A")).to_be_visible()
        # The agent works (the stand-in model is slow to answer WAIT); stopped from one tab, both see it idle.
        expect(a.page.locator(".chat-head .badge")).not_to_have_text("idle", timeout=30_000)
        b.page.get_by_role("button", name="Abort").click()
        expect(b.page.locator(".notice")).to_contain_text("Asked the agent to stop")
        expect(a.page.locator(".chat-head .badge")).to_have_text("idle", timeout=30_000)
        expect(b.page.locator(".chat-head .badge")).to_have_text("idle")
        expect(a.page.get_by_role("button", name="Abort")).to_be_disabled()

        # A chat deleted in one tab leaves the other tab's list.
        doomed = new_chat(stack, REPOS[2])
        b_page.goto(f"{stack.base}/#/chats")
        listed = b_page.locator(f'a[data-session="{doomed["session_id"]}"]')
        expect(listed).to_be_visible()
        b.go(f"#/chat/{doomed['session_id']}")
        b.page.get_by_text("More").click()
        b.page.get_by_role("button", name="Delete chat…").click()
        dialog = b.page.get_by_role("dialog")
        expect(dialog).to_contain_text("Delete this chat?")
        b.shot("chat-delete-confirm")
        dialog.get_by_role("button", name="Delete", exact=True).click()
        b.page.wait_for_url("**/#/chats", timeout=60_000)
        expect(listed).to_have_count(0)
        expect(b_page.locator(f'a[data-session="{chat["session_id"]}"]')).to_be_visible()
    finally:
        for p in (a, b):
            p.page.context.close()
    assert a.console.errors == [] and b.console.errors == []


def test_the_agents_real_turn_streams_in_and_its_work_is_pushed(
    phone: Phone, stack: RunningStack, github: FakeGitHub, origin: Origin
) -> None:
    """The stand-in model answers through the real opencode: the tool call and the reply arrive over the real
    event stream. The agent commits and pushes on its own (git asks bin/start's credential helper for the token),
    and a pull request is opened from the chat's menu."""
    chat = new_chat(stack, REPOS[0])
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    task = "RUN echo fixed > fix.txt && git add fix.txt && git commit -qm 'Fix the bug' && git push -q origin HEAD"
    page.fill("#prompt", task)
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-assistant").first).to_contain_text("$ echo fixed > fix.txt", timeout=30_000)
    expect(page.locator(".msg-assistant").last).to_contain_text("Done.", timeout=30_000)
    expect(page.locator(".chat-head .badge")).to_have_text("idle", timeout=30_000)
    phone.shot("chat-agent-turn")
    head = git("rev-parse", "HEAD", cwd=Path(chat["path"])).strip()
    assert git("rev-parse", f"refs/heads/{chat['branch']}", cwd=origin.root / f"{REPOS[0]}.git").strip() == head

    page.get_by_text("More").click()
    page.get_by_role("button", name="Push & open pull request").click()
    notice = page.locator(".notice", has_text="Pushed")
    expect(notice).to_contain_text(f"Pushed {chat['branch']}", timeout=60_000)
    expect(notice.get_by_role("link")).to_have_text(re.compile(r"Pull request #\d+"))
    assert ("Fix the bug", chat["branch"]) in [(pr["title"], pr["head"]) for pr in github.pulls]
    phone.shot("chat-pushed")


def test_a_command_killed_by_a_signal_shows_as_a_failed_step(phone: Phone, stack: RunningStack) -> None:
    """The agent's command exits 137 (SIGKILL): opencode calls the tool call completed, the page says it failed,
    with the exit status, and the agent's shell's line saying why is in the step's output."""
    chat = new_chat(stack, REPOS[1])
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    page.fill("#prompt", "RUN sh -c 'kill -9 $$'")
    page.get_by_role("button", name="Send").click()
    step = page.locator(".msg-assistant details.tool", has_text="kill -9")
    expect(step.locator("summary .badge")).to_have_text("failed (exit 137)", timeout=30_000)
    expect(step).to_have_class(re.compile(r"\btool-error\b"))
    expect(page.locator(".msg-assistant").last).to_contain_text("Done.", timeout=30_000)
    expect(page.locator(".chat-head .badge")).to_have_text("idle", timeout=30_000)
    step.locator("summary").click()
    expect(step.locator("pre.output")).to_contain_text("mecodes: the command was killed")
    phone.shot("chat-failed-step")
    phone.fits_narrow_screen("chat-failed-step")


def test_an_open_chat_keeps_working_after_its_agents_memory_is_released(phone: Phone, stack: RunningStack) -> None:
    """The release job disposes an idle chat's opencode instance, which ends the page's event stream: the page
    reconnects and the next prompt's reply still streams in."""
    chat = new_chat(stack, REPOS[2])
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    expect(page.locator(".chat-head .badge")).to_have_text("idle")
    query = urllib.parse.urlencode({"directory": chat["path"]})
    assert stack.request("POST", f"/instance/dispose?{query}")[0] == 200
    page.fill("#prompt", "Still there?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-assistant").last).to_contain_text("Echo: Still there?", timeout=30_000)


def test_a_failed_reply_is_shown_in_the_list_and_the_chat(phone: Phone, stack: RunningStack) -> None:
    chat = new_chat(stack, REPOS[1], prompt="FAIL the provider refused the API key")
    page = phone.page
    phone.go("#/chats")
    item = page.locator(f'a[data-session="{chat["session_id"]}"]')
    expect(item.locator(".badge").first).to_have_text("error", timeout=30_000)
    expect(item).to_contain_text("The last reply failed: the provider refused the API key")
    phone.shot("chats-error")
    item.click()
    expect(page.locator(".msg-assistant .error")).to_contain_text("the provider refused the API key")


def test_an_interrupted_chat_says_so_and_continues(phone: Phone, stack: RunningStack) -> None:
    """opencode dies (the OOM killer, say) while a reply streams in: the chat and the list say `interrupted` and why,
    and Continue brings the rest of the turn."""
    chat = new_chat(stack, REPOS[2])
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    page.fill("#prompt", "SLOW 120 " + "word " * 200)
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-assistant").last).to_contain_text("word", timeout=30_000)
    for status, url in ((502, "/event"), (502, "/session/"), (503, "/admin/chats/")):  # while opencode is down
        phone.console.expect_failure(status, url)
    psutil.Process(service_pid(stack, "opencode")).kill()  # procman starts it again
    note = page.locator(".chat-state .warning")
    expect(note).to_contain_text("Interrupted: opencode stopped while the agent was answering", timeout=60_000)
    phone.shot("chat-interrupted")
    phone.fits_narrow_screen("chat-interrupted")

    phone.go("#/chats")
    item = page.locator(f'a[data-session="{chat["session_id"]}"]')
    expect(item.locator(".badge").first).to_have_text("interrupted", timeout=30_000)
    expect(item).to_contain_text("Open it to continue.")
    item.click()
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".msg-assistant").last).to_contain_text("Keep going from where you stopped", timeout=30_000)
    expect(page.locator(".chat-state")).not_to_contain_text("Interrupted", timeout=30_000)
    expect(page.locator(".chat-head .badge")).to_have_text("idle", timeout=30_000)


def test_a_chat_without_its_worktree_offers_to_make_it_again(phone: Phone, stack: RunningStack) -> None:
    chat = new_chat(stack, REPOS[2])
    removed = stack.wait_job(stack.request("DELETE", f"/admin/worktrees/{REPOS[2]}/{chat['worktree']}")[1])
    assert removed["status"] == "finished", removed
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    note = page.locator(".chat-state .warning")
    expect(note).to_contain_text(f"This chat's worktree was removed (its branch {chat['branch']} is kept)")
    expect(page.locator("#prompt")).to_be_hidden()
    phone.shot("chat-without-worktree")
    note.get_by_role("button", name="Make the worktree again").click()
    expect(page.locator("#prompt")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"The worktree is back, on branch {chat['branch']}.")).to_be_visible()
    expect(note).to_be_hidden()
    page.fill("#prompt", "Back to work")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-assistant").last).to_contain_text("Echo: Back to work", timeout=30_000)


def test_a_chat_being_prepared_is_cancelled_from_the_phone(
    phone: Phone, stack: RunningStack, git_server: GitHttpServer, origin: Origin
) -> None:
    repo = f"{WEB_OWNER}/big{uuid.uuid4().hex[:4]}"
    origin.create(repo, big_bytes=10_000_000)
    git_server.delay = 0.05  # the clone takes about 30 s: long enough to be caught
    try:
        page = phone.page
        phone.go("#/new")
        page.fill("#repo", repo)
        page.fill("#prompt", "never sent")
        page.get_by_role("button", name="Start chat").click()
        card = page.locator(".job-card")
        expect(card.locator(".step")).to_contain_text("Receiving objects", timeout=30_000)
        phone.shot("new-chat-cancel")
        card.get_by_role("button", name="Cancel").click()
        expect(card.locator(".step")).to_have_text("Cancelled", timeout=20_000)
        expect(card.get_by_role("button", name="Dismiss")).to_be_visible()
        phone.fits_narrow_screen("new-chat-cancelled")
    finally:
        git_server.delay = 0
    (job,) = [
        j for j in stack.request("GET", "/admin/jobs")[1]["jobs"] if j["kind"] == "chat" and repo in j["description"]
    ]
    assert job["status"] == "canceled" and job["error"].startswith("cancelled on request in phase repo"), job
    assert repo not in [r["repo"] for r in stack.request("GET", "/admin/repos")[1]["repos"]]
    card.get_by_role("button", name="Dismiss").click()
    expect(page.locator(".job-card")).to_have_count(0)


def connected(page: Page, stream: str) -> int:
    """Open the page's stream as opencode does (`server.connected`), then wait for the reload that follows."""
    opened = page.evaluate("part => window.__sse.feed(part, [{type: 'server.connected', properties: {}}])", stream)
    expect(page.locator(".messages")).not_to_have_attribute("aria-busy", "true")
    return opened


def recorded_reply(session_id: str, directory: str, parent_id: str) -> list[dict[str, Any]]:
    """An assistant's turn as opencode 1.18 streams it on /event (shapes from its OpenAPI document and a real
    session's stream): status, message, a text part grown by deltas, a shell call, a file edit, the diff."""
    now = int(time.time() * 1000)
    msg = "msg_zzzzzzrecorded0001"

    def event(kind: str, **properties: Any) -> dict[str, Any]:
        return {
            "id": f"evt_rec{uuid.uuid4().hex[:12]}",
            "type": kind,
            "properties": {"sessionID": session_id, **properties},
        }

    def part(pid: str, kind: str, **fields: Any) -> dict[str, Any]:
        body = {"id": f"prt_zzzz{pid}", "sessionID": session_id, "messageID": msg, "type": kind, **fields}
        return event("message.part.updated", part=body, time=now)

    info = {
        "id": msg,
        "sessionID": session_id,
        "role": "assistant",
        "time": {"created": now},
        "parentID": parent_id,
        "modelID": "recorded",
        "providerID": "test",
        "mode": "build",
        "agent": "build",
        "path": {"cwd": directory, "root": directory},
        "cost": 0,
        "tokens": {"input": 10, "output": 20, "reasoning": 0, "cache": {"read": 0, "write": 0}},
    }
    patch = "--- a/README.md\n+++ b/README.md\n@@ -0,0 +1,2 @@\n+# App\n+Usage: run it.\n"
    timing = {"start": now, "end": now}
    return [
        event("session.status", status={"type": "busy"}),
        event("message.updated", info=info),
        part("01", "step-start"),
        part("02", "text", text="", time={"start": now}),
        *[
            event("message.part.delta", messageID=msg, partID="prt_zzzz02", field="text", delta=piece)
            for piece in ("I looked at the project ", "and wrote a README ", "with `usage` notes.")
        ],
        part(
            "03",
            "tool",
            callID="call_1",
            tool="bash",
            state={
                "status": "completed",
                "input": {"command": "ls", "description": "List the files"},
                "output": "file0.txt\nfile1.txt\nfile2.txt\n",
                "title": "ls",
                "metadata": {},
                "time": timing,
            },
        ),
        part(
            "04",
            "tool",
            callID="call_2",
            tool="edit",
            state={
                "status": "completed",
                "input": {"filePath": f"{directory}/README.md", "oldString": "", "newString": "# App\n"},
                "output": "",
                "title": "README.md",
                "metadata": {"diff": patch, "filediff": {"file": "README.md", "additions": 2, "deletions": 0}},
                "time": timing,
            },
        ),
        part("05", "text", text="Done: README.md explains how to run it.", time=timing),
        event("message.updated", info={**info, "time": {"created": now, "completed": now}}),
        event(
            "session.diff",
            diff=[{"file": "README.md", "patch": patch, "additions": 2, "deletions": 0, "status": "added"}],
        ),
        event("session.status", status={"type": "idle"}),
        event("session.idle"),
    ]


def test_streamed_reply_renders_and_a_dropped_stream_catches_up(shimmed_phone: Phone, stack: RunningStack) -> None:
    phone, page = shimmed_phone, shimmed_phone.page
    chat = new_chat(stack, REPOS[0], prompt="Write a README")
    recorded(stack, chat, "Write a README")  # the page gets no live events but the test's
    stream = f"/event?directory={urllib.parse.quote(chat['path'], safe='')}"
    phone.go(f"#/chat/{chat['session_id']}")
    page.wait_for_function("part => window.__sse.open(part).length === 1", arg=stream)
    assert connected(page, stream) == 1
    expect(user_message(page, "Write a README")).to_be_visible()
    parent = page.locator(".msg-user").first.get_attribute("data-message")

    events = recorded_reply(chat["session_id"], chat["path"], parent)
    assert page.evaluate("([part, events]) => window.__sse.feed(part, events)", [stream, events])
    reply = page.locator(".msg-assistant", has_text="I looked at the project")
    expect(reply).to_contain_text("I looked at the project and wrote a README with usage notes.")
    expect(reply.locator("code", has_text="usage")).to_be_visible()
    expect(reply).to_contain_text("Done: README.md explains how to run it.")
    bash = reply.locator("details.tool", has_text="bash")
    expect(bash.locator("summary")).to_contain_text("List the files")
    expect(bash.locator("summary")).to_contain_text("done")
    edit = reply.locator("details.tool", has_text="edit")
    expect(edit.locator("summary")).to_contain_text("README.md")
    expect(edit.locator("summary")).to_contain_text("+2")
    edit.locator("summary").click()
    expect(edit.locator(".diff .add", has_text="+# App")).to_be_visible()
    expect(page.locator(".chat-head .badge")).to_have_text("idle")
    phone.shot("chat-streamed")
    phone.fits_narrow_screen("chat-streamed")

    # The phone sleeps: the stream drops, and meanwhile a message is sent from elsewhere.
    page.evaluate("part => window.__sse.drop(part)", stream)
    expect(page.locator(".stream-note")).to_contain_text("Reconnecting")
    prompt_via_api(stack, chat, "Sent while the phone slept")
    recorded(stack, chat, "Sent while the phone slept")
    page.wait_for_timeout(300)
    expect(user_message(page, "Sent while the phone slept")).to_have_count(0)
    # It comes back: a new stream, the messages reloaded (the missed one shows), then the stream resumes.
    page.wait_for_function("part => window.__sse.open(part).length === 1", arg=stream, timeout=10_000)
    assert page.evaluate("part => window.__sse.count(part)", stream) == 2
    assert connected(page, stream) == 1
    expect(user_message(page, "Sent while the phone slept")).to_be_visible()
    expect(page.locator(".stream-note")).to_be_hidden()
    resumed = recorded_reply(chat["session_id"], chat["path"], parent)
    for e in resumed:
        if e["type"] == "message.updated":
            e["properties"]["info"]["id"] = "msg_zzzzzzrecorded0002"
        elif "part" in e["properties"]:
            e["properties"]["part"]["messageID"] = "msg_zzzzzzrecorded0002"
            e["properties"]["part"]["id"] += "b"
        elif e["type"] == "message.part.delta":
            e["properties"]["messageID"] = "msg_zzzzzzrecorded0002"
            e["properties"]["partID"] += "b"
    page.evaluate("([part, events]) => window.__sse.feed(part, events)", [stream, resumed])
    expect(page.locator(".msg-assistant", has_text="I looked at the project")).to_have_count(1)
    expect(page.locator(".msg-assistant").last).to_contain_text("Done: README.md explains how to run it.")


def test_resources_list_the_worktree_and_run_a_gc_dry_run(phone: Phone, stack: RunningStack) -> None:
    chat = new_chat(stack, REPOS[0])
    page = phone.page
    phone.go("#/resources")
    worktree = page.locator(f'[data-worktree="{chat["worktree"]}"]')
    expect(worktree).to_contain_text(chat["branch"])
    expect(worktree).to_contain_text("clean")
    expect(worktree.get_by_role("link", name="Open chat")).to_have_attribute("href", f"#/chat/{chat['session_id']}")
    expect(page.locator(f'[data-repo="{REPOS[0]}"]')).to_contain_text("worktree")
    expect(page.get_by_role("img", name="used")).to_be_visible()
    expect(page.locator("#gc")).to_contain_text("Runs by itself every")

    page.get_by_role("button", name="Dry run").click()
    result = page.locator(".gc-run")
    expect(result.get_by_role("heading", name="Dry run: what would go")).to_be_visible(timeout=60_000)
    expect(result.locator(".item", has_text=chat["worktree"])).to_contain_text("kept")
    # among the recent jobs, not necessarily first: a periodic job (release) may have ended just after it
    expect(page.locator("#jobs .item", has_text="gc").first).to_contain_text("finished")
    phone.shot("resources")
    phone.fits_narrow_screen("resources")


def test_resources_show_the_memory_of_each_service(phone: Phone) -> None:
    page = phone.page
    phone.go("#/resources")
    memory = page.get_by_role("region", name="Memory")
    expect(memory.get_by_role("img", name="Memory:")).to_be_visible()
    expect(memory).to_contain_text(re.compile(r"used of .+ free; a new chat needs \S+ [KMG]?B free, else it waits"))
    for name in ("redis", "opencode", "sidecar", "worker", "caddy"):
        row = memory.locator(f'tr[data-service="{name}"]')
        expect(row.get_by_role("cell").first).to_have_text(re.compile(r"^\d+(\.\d)? [KMG]B$"))
        expect(row.locator(".badge")).to_have_text("running")
    expect(memory.get_by_role("heading", name="Agent's commands")).to_be_visible()
    commands = memory.locator("[data-command-pid]").or_(memory.get_by_text("No agent commands running."))
    expect(commands.first).to_be_visible()
    phone.shot("resources-memory")
    phone.fits_narrow_screen("resources-memory")


def test_resources_list_failed_logins_and_bans(phone: Phone, stack: RunningStack) -> None:
    guesser = "198.51.100.50"
    for i in range(6):
        wrong = stack.request("GET", "/admin/repos", auth=(USER, f"guess{i}"), headers={"Fly-Client-IP": guesser})
        assert wrong[0] == (401 if i < 5 else 429)
    page = phone.page
    phone.go("#/resources")
    logins = page.get_by_role("region", name="Failed logins")
    entry = logins.locator(f'[data-login="{guesser}"]')
    expect(entry).to_contain_text(re.compile(r"5 wrong passwords · 1 ban · \d+ requests? refused · last"))
    expect(entry.locator(".badge")).to_contain_text("banned until")
    expect(logins).to_contain_text("An address is banned for 1 min after 5 wrong passwords within 1 min")
    phone.shot("resources-logins")
    phone.fits_narrow_screen("resources-logins")


def test_an_orphan_is_killed_from_resources_only_once_confirmed(phone: Phone, stack: RunningStack) -> None:
    chat = new_chat(stack, REPOS[2])
    orphan = spawn_orphan("exec sleep 300", cwd=Path(chat["path"]))  # left behind by an agent's command
    try:
        page = phone.page
        phone.go("#/resources")
        item = page.locator(f'[data-pid="{orphan.pid}"]')
        expect(item).to_contain_text("sleep 300")
        expect(item).to_contain_text(f"in worktree {Path(chat['path']).name}")
        kill = item.get_by_role("button", name=f"Kill process {orphan.pid}")

        kill.click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text(f"Kill process {orphan.pid}?")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
        assert orphan.is_running()

        kill.click()
        dialog.get_by_role("button", name="Kill", exact=True).click()
        expect(page.locator(".notice", has_text=f"ended: {orphan.pid}")).to_be_visible(timeout=30_000)
        assert wait_until(lambda: not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE, 10, "the kill")
        expect(item).to_have_count(0)
        phone.shot("resources-killed")
    finally:
        if orphan.is_running():
            orphan.kill()


def test_a_refused_delete_shows_the_servers_reason_verbatim(phone: Phone, stack: RunningStack) -> None:
    chat = new_chat(stack, REPOS[1])
    (Path(chat["path"]) / "work-in-progress.txt").write_text("not committed yet\n")
    owner, name = chat["repo"].split("/")
    status, refusal = stack.request("DELETE", f"/admin/worktrees/{owner}/{name}/{chat['worktree']}")
    assert status == 409  # what the page must show, word for word

    page = phone.page
    phone.console.expect_failure(409, "/admin/worktrees/")
    phone.go("#/resources")
    worktree = page.locator(f'[data-worktree="{chat["worktree"]}"]')
    expect(worktree).to_contain_text("uncommitted changes")
    worktree.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete the worktree")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(worktree.locator(".error")).to_have_count(0)

    worktree.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    error = worktree.get_by_role("alert")
    expect(error.locator(".error-text")).to_have_text(refusal["message"])
    expect(worktree.get_by_role("button", name="Delete anyway…")).to_be_visible()
    phone.shot("resources-refused")
    phone.fits_narrow_screen("resources-refused")
    assert Path(chat["path"]).exists()

    # In the chat itself: push is refused (nothing committed), and so is deleting it; both reasons verbatim.
    phone.console.expect_failure(409, f"/admin/chats/{chat['session_id']}")
    status, no_push = stack.request("POST", f"/admin/chats/{chat['session_id']}/push", {})
    assert status == 409
    status, no_delete = stack.request("DELETE", f"/admin/chats/{chat['session_id']}")
    assert status == 409
    worktree.get_by_role("link", name="Open chat").click()
    page.get_by_text("More").click()
    page.get_by_role("button", name="Push & open pull request").click()
    expect(page.locator(".error-text")).to_have_text(no_push["message"])
    page.get_by_text("More").click()
    page.get_by_role("button", name="Delete chat…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    expect(page.locator(".error-text")).to_have_text(no_delete["message"])
    expect(page.get_by_role("button", name="Delete anyway, losing the work…")).to_be_visible()
    phone.shot("chat-refused")
    phone.fits_narrow_screen("chat-refused")
    assert Path(chat["path"]).exists()


@pytest.fixture(autouse=True, scope="module")
def _fresh_artifacts() -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    (ARTIFACTS / "README.txt").write_text(json.dumps({"made_by": "tests/test_web.py", "viewport": PHONE}) + "\n")
