"""Sending notifications: devices registered through the API, pushes sent by a real worker to a stand-in push service
on 127.0.0.1 that checks each one as a push service and a browser would (the VAPID JWT, the RFC 8291 encryption),
retries, devices the push service forgets, per-device events, an Apprise channel, and the VAPID key kept private."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from domain.config import Settings, load_settings
from domain.notifications import KINDS, ChatEvent
from sidecar import create_app
from tests.conftest import ROOT, Api, WorkerProcess, start_worker
from tests.support.push_service import JsonHook, PushService, b64url

PREFIX = "/admin/notifications"
PUBLIC_URL = "https://mecodes.example"
URLS = "MECODES_NOTIFY_URLS"


@dataclass
class Notify:
    settings: Settings
    env: dict[str, str]
    client: FlaskClient
    api: Api
    worker: WorkerProcess
    log: Path
    push: PushService
    hook: JsonHook

    def register(self, browser: str, **extra: Any) -> dict[str, Any]:
        """A new browser subscribed at the stand-in (`/push/<browser>`), registered as a device."""
        subscription, _ = self.push.subscription(browser)
        response = self.client.post(f"{PREFIX}/subscriptions", json={"subscription": subscription, **extra})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def send_test(self, device_id: str | None = None) -> dict[str, Any]:
        response = self.client.post(f"{PREFIX}/test", json={"subscription_id": device_id} if device_id else {})
        assert response.status_code == 202, response.get_json()
        job = self.api.wait(response.get_json(), timeout=90)
        assert job["status"] == "finished", job
        return job["result"]

    def send(self, event: ChatEvent) -> dict[str, Any]:
        """As the watcher does: worker.jobs.notify enqueued by name."""
        queue = Queue(self.settings.queue_name, connection=Redis.from_url(self.settings.redis_url))
        job = queue.enqueue("worker.jobs.notify", event.as_dict())
        return self.api.wait({"id": job.id, "url": f"/admin/jobs/{job.id}"}, timeout=90)["result"]

    def devices(self) -> list[dict[str, Any]]:
        return self.client.get(f"{PREFIX}/subscriptions").get_json()["subscriptions"]

    def sent(self, key: str) -> dict[str, Any]:
        entries = self.client.get(PREFIX).get_json()["notifications"]
        return next(entry for entry in entries if entry["key"] == key)


@pytest.fixture(scope="module")
def notify(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notify]:
    folder = tmp_path_factory.mktemp("notify")
    with PushService() as push, JsonHook() as hook:
        env = {
            **stack_env,
            "MECODES_QUEUE": f"notify-{uuid.uuid4().hex[:8]}",
            "MECODES_NOTIFY_DIR": str(folder / "notifications"),
            "MECODES_PUSH_LOOPBACK": "on",
            URLS: f"json://{hook.url.removeprefix('http://')}/hook",
            "MECODES_PUBLIC_URL": PUBLIC_URL,
        }
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            settings = load_settings()
        client = create_app(settings).test_client()
        log = folder / "worker.log"
        worker = start_worker(env, log)
        push.expect_key = client.get(f"{PREFIX}/key").get_json()["public_key"]
        notify = Notify(settings, env, client, Api(client), worker, log, push, hook)
        yield notify
        notify.worker.stop()  # the one running now: a test restarts it


@pytest.fixture(autouse=True)
def no_devices_left(notify: Notify) -> Iterator[None]:
    yield
    for device in notify.devices():
        notify.client.delete(f"{PREFIX}/subscriptions/{device['id']}")


def chat_event(kind: str, session_id: str = "ses_notify01") -> ChatEvent:
    return ChatEvent(
        kind, session_id, "Fix the login", f"{kind}: first line", f"/#/chat/{session_id}", uuid.uuid4().hex
    )


def test_a_test_notification_arrives_encrypted_and_signed(notify: Notify) -> None:
    device = notify.register("first", name="Pixel")
    assert device["name"] == "Pixel" and device["events"] == list(KINDS) and device["endpoint_host"] == "127.0.0.1"
    assert [d["id"] for d in notify.devices()] == [device["id"]]

    result = notify.send_test(device["id"])

    assert notify.push.errors() == []
    (payload,) = notify.push.payloads("first")
    assert payload == {
        "kind": "test",
        "title": "mecodes",
        "body": payload["body"],
        "url": "/#/chats",
        "session_id": None,
        "tag": "mecodes-test",
    }
    assert payload["body"].startswith("Test notification")
    (push,) = notify.push.received("first")
    assert push.claims is not None and push.claims["sub"] == "mailto:tester@users.noreply.github.com"
    assert push.headers["urgency"] == "high" and push.headers["ttl"] == "600" and len(push.headers["topic"]) == 32
    assert result["targets"] == [
        {
            "target": "device",
            "id": device["id"],
            "name": "Pixel",
            "outcome": "sent",
            "status": 201,
            "reason": None,
            "attempts": 1,
        }
    ]
    assert notify.sent(result["key"])["targets"] == result["targets"]  # a test to one device skips the channels


def test_a_subscription_the_push_service_forgot_is_removed(notify: Notify) -> None:
    kept, gone = notify.register("kept"), notify.register("gone")
    notify.push.answer("gone", 410)

    result = notify.send_test()

    assert {t["id"]: t["outcome"] for t in result["targets"] if t["target"] == "device"} == {
        kept["id"]: "sent",
        gone["id"]: "gone",
    }
    assert [d["id"] for d in notify.devices()] == [kept["id"]]
    (entry,) = [t for t in notify.sent(result["key"])["targets"] if t["id"] == gone["id"]]
    assert entry["status"] == 410 and entry["attempts"] == 1
    assert notify.push.payloads("gone") == []


def test_transient_failures_are_retried_with_back_off(notify: Notify) -> None:
    device = notify.register("flaky")
    notify.push.answer("flaky", 500, times=2)

    result = notify.send_test(device["id"])

    (outcome,) = result["targets"]
    assert (outcome["outcome"], outcome["status"], outcome["attempts"]) == ("sent", 201, 3)
    assert len(notify.push.payloads("flaky")) == 1
    first, second, third = (p.at for p in notify.push.received("flaky"))
    assert second - first >= 0.9 and third - second >= 3.9  # 1 s, then 4 s


def test_retry_after_is_honoured(notify: Notify) -> None:
    device = notify.register("busy")
    notify.push.answer("busy", 429, retry_after=3)

    result = notify.send_test(device["id"])

    assert (result["targets"][0]["outcome"], result["targets"][0]["attempts"]) == ("sent", 2)
    first, second = (p.at for p in notify.push.received("busy"))
    assert second - first >= 2.9  # not the 1 s back-off: the push service's word


def test_a_push_that_keeps_failing_is_recorded_failed(notify: Notify) -> None:
    device = notify.register("refuses")
    notify.push.answer("refuses", 403)

    result = notify.send_test(device["id"])

    (outcome,) = result["targets"]
    assert (outcome["outcome"], outcome["status"], outcome["attempts"]) == ("failed", 403, 1)
    assert outcome["reason"].startswith("the push service answered 403")
    assert "/push/refuses" not in json.dumps(notify.sent(result["key"]))  # the endpoint is a capability
    assert [d["id"] for d in notify.devices()] == [device["id"]]  # kept: only 404 and 410 mean gone


def test_each_device_gets_the_events_it_chose_and_channels_get_them_all(notify: Notify) -> None:
    finished_only = notify.register("finisher", name="tablet", events=["finished"])
    notify.register("worrier", name="phone", events=["needs-input", "failed"])

    failed = chat_event("failed")
    result = notify.send(failed)

    assert notify.push.payloads("worrier") == [failed.payload()]
    assert failed.payload()["tag"] == "mecodes-ses_notify01" and failed.payload()["url"] == "/#/chat/ses_notify01"
    assert notify.push.payloads("finisher") == []
    assert notify.push.received("worrier")[0].headers["urgency"] == "normal"
    assert {t["name"]: t["outcome"] for t in result["targets"]} == {"phone": "sent", notify.env[URLS]: "sent"}
    (posted,) = [p for p in notify.hook.received("/hook") if p["title"] == "Fix the login (failed)"]
    assert posted["message"] == f"failed: first line\n{PUBLIC_URL}/#/chat/ses_notify01"
    assert posted["type"] == "failure"

    asking = chat_event("needs-input")
    notify.send(asking)
    assert notify.push.payloads("worrier")[-1] == asking.payload()
    assert notify.push.received("worrier")[-1].headers["urgency"] == "high"
    assert notify.push.payloads("finisher") == []

    response = notify.client.patch(f"{PREFIX}/subscriptions/{finished_only['id']}", json={"events": ["failed"]})
    assert response.status_code == 200 and response.get_json()["events"] == ["failed"]
    again = chat_event("failed")
    notify.send(again)
    assert notify.push.payloads("finisher") == [again.payload()]


def test_an_event_enqueued_twice_is_sent_once(notify: Notify) -> None:
    notify.register("once")
    event = chat_event("finished")

    first, second = notify.send(event), notify.send(event)

    assert [t["outcome"] for t in first["targets"] if t["target"] == "device"] == ["sent"]
    assert second == {"key": event.key, "skipped": "this event was sent already"}
    assert notify.push.payloads("once") == [event.payload()]


def test_posting_an_endpoint_again_updates_it_and_delete_forgets_it(notify: Notify) -> None:
    subscription, _ = notify.push.subscription("again")
    url = f"{PREFIX}/subscriptions"
    created = notify.client.post(url, json={"subscription": subscription, "name": "old"})
    updated = notify.client.post(url, json={"subscription": subscription, "name": "new", "events": ["failed"]})

    assert (created.status_code, updated.status_code) == (201, 200)
    assert updated.get_json()["id"] == created.get_json()["id"]
    assert [(d["name"], d["events"]) for d in notify.devices()] == [("new", ["failed"])]

    device_id = created.get_json()["id"]
    assert notify.client.delete(f"{url}/{device_id}").status_code == 204
    assert notify.devices() == []
    assert notify.client.delete(f"{url}/{device_id}").status_code == 404
    assert notify.client.patch(f"{url}/{device_id}", json={"name": "x"}).status_code == 404
    assert notify.client.post(f"{PREFIX}/test", json={"subscription_id": device_id}).status_code == 404


def valid_subscription(notify: Notify) -> dict[str, Any]:
    return notify.push.subscription(f"shape-{uuid.uuid4().hex[:6]}")[0]


def without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


MALFORMED = {
    "missing keys": ("subscription.keys", lambda s: without(s, "keys")),
    "missing auth": ("subscription.keys.auth", lambda s: {**s, "keys": without(s["keys"], "auth")}),
    "missing p256dh": ("subscription.keys.p256dh", lambda s: {**s, "keys": without(s["keys"], "p256dh")}),
    "p256dh not base64url": ("subscription.keys.p256dh", lambda s: {**s, "keys": {**s["keys"], "p256dh": "ab+/cd"}}),
    "p256dh too short": (
        "subscription.keys.p256dh",
        lambda s: {**s, "keys": {**s["keys"], "p256dh": b64url(b"\x04" + bytes(63))}},
    ),
    "p256dh off the curve": (
        "subscription.keys.p256dh",
        lambda s: {**s, "keys": {**s["keys"], "p256dh": b64url(b"\x04" + bytes(range(64)))}},
    ),
    "auth of 15 bytes": ("subscription.keys.auth", lambda s: {**s, "keys": {**s["keys"], "auth": b64url(bytes(15))}}),
    "http endpoint": ("subscription.endpoint", lambda s: {**s, "endpoint": "http://push.example.com/x"}),
    "not a URL": ("subscription.endpoint", lambda s: {**s, "endpoint": "push service"}),
    "endpoint with a password": ("subscription.endpoint", lambda s: {**s, "endpoint": "https://u:p@push.example/x"}),
    "a 10 KB endpoint": ("subscription.endpoint", lambda s: {**s, "endpoint": "https://push.example/" + "a" * 10240}),
    "endpoint not text": ("subscription.endpoint", lambda s: {**s, "endpoint": 42}),
    "missing endpoint": ("subscription.endpoint", lambda s: without(s, "endpoint")),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_subscriptions_are_refused_naming_the_field(notify: Notify, case: str) -> None:
    field, spoil = MALFORMED[case]
    response = notify.client.post(f"{PREFIX}/subscriptions", json={"subscription": spoil(valid_subscription(notify))})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {field: [response.get_json()["errors"]["json"][field][0]]}}
    assert field in response.get_json()["message"]
    assert notify.devices() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subscription": None}, "subscription"),
        ({"subscription": "endpoint"}, "subscription"),
        ({"subscription": [1]}, "subscription"),
        ({"events": ["finished", "sometimes"]}, "events"),
        ({"name": "x" * 61}, "name"),
        ({"name": "tab\there"}, "name"),
    ],
)
def test_bad_names_and_events_are_refused(notify: Notify, body: dict[str, Any], field: str) -> None:
    response = notify.client.post(f"{PREFIX}/subscriptions", json={"subscription": valid_subscription(notify), **body})
    assert response.status_code == 422 and field in response.get_json()["errors"]["json"]
    assert notify.client.post(f"{PREFIX}/subscriptions", json={"name": "no subscription"}).status_code == 422


def test_http_to_this_machine_needs_the_setting(notify: Notify) -> None:
    strict = create_app(replace(notify.settings, push_loopback=False)).test_client()
    response = strict.post(f"{PREFIX}/subscriptions", json={"subscription": valid_subscription(notify)})
    assert response.status_code == 422
    assert "MECODES_PUSH_LOOPBACK" in response.get_json()["errors"]["json"]["subscription.endpoint"][0]


def test_the_number_of_devices_is_limited(notify: Notify) -> None:
    devices = [notify.register(f"many-{i}") for i in range(20)]
    subscription, _ = notify.push.subscription("one-too-many")

    refused = notify.client.post(f"{PREFIX}/subscriptions", json={"subscription": subscription})

    assert refused.status_code == 409 and "20 devices" in refused.get_json()["message"]
    assert len(notify.devices()) == 20
    again, _ = notify.push.subscription("many-0")  # the same endpoint as the first: an update, not a 21st
    assert notify.client.post(f"{PREFIX}/subscriptions", json={"subscription": again}).status_code == 200
    assert notify.devices()[0]["id"] == devices[0]["id"]


def test_a_test_with_nowhere_to_go_is_refused(notify: Notify) -> None:
    lonely = create_app(replace(notify.settings, notify_urls=())).test_client()
    response = lonely.post(f"{PREFIX}/test", json={})
    assert response.status_code == 409 and "MECODES_NOTIFY_URLS" in response.get_json()["message"]


def test_the_vapid_key_stays_private_and_the_same_across_restarts(notify: Notify) -> None:
    folder = notify.settings.notify_dir
    key_file = folder / "vapid.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    private = json.loads(key_file.read_text())["private_key"]
    secret_lines = [line for line in private.splitlines() if "PRIVATE KEY" not in line]

    device = notify.register("restart")
    notify.worker.stop()
    notify.worker = start_worker(notify.env, notify.log)
    restarted = create_app(notify.settings).test_client()
    key = restarted.get(f"{PREFIX}/key").get_json()["public_key"]
    result = notify.send_test(device["id"])

    assert key == notify.push.expect_key
    assert notify.push.errors() == [] and len(notify.push.payloads("restart")) == 1  # signed with the same key
    seen = [
        restarted.get(f"{PREFIX}/key").get_data(as_text=True),
        restarted.get(f"{PREFIX}/subscriptions").get_data(as_text=True),
        restarted.get(PREFIX).get_data(as_text=True),
        restarted.get(f"/admin/jobs/{result['job_id']}").get_data(as_text=True),
        restarted.get("/admin/jobs").get_data(as_text=True),
        notify.log.read_text(),
        (folder / "devices" / f"{device['id']}.json").read_text(),
    ]
    assert not [line for line in secret_lines for text in seen if line in text]
    assert "PRIVATE KEY" not in "".join(seen)


def test_two_processes_making_the_key_at_once_agree(tmp_path: Path) -> None:
    folder = tmp_path / "notifications"
    code = "import sys, pathlib, domain.vapid as v; print(v.public_key(pathlib.Path(sys.argv[1])))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(keys) == 1 and len(keys.pop()) == 87  # 65 bytes, base64url
    assert os.listdir(folder) == ["vapid.json"]  # no staged file left behind
