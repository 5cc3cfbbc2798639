"""The agent watcher (`python -m watcher`, domain/chat_watch.py) tells what happens to a chat once: finished, failed,
needs input (a question, a permission), interrupted; a stop the person asked for tells nothing; a restart of the
watcher in the middle of a turn, or after it, tells nothing twice. End to end: the production stack (bin/start, its
Procfile), the real opencode with the stand-in model (bash commands ask for permission, as in
tests/test_needs_input.py), a phone registered for Web Push, and a stand-in push service on 127.0.0.1 that checks
the VAPID JWT and decrypts each push (RFC 8291) with the phone's keys."""

from __future__ import annotations

import contextlib
import signal
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from redis import Redis
from rq.job import Job

from tests.conftest import ASK_BASH, Origin, wait_until
from tests.support.fake_llm import FakeLLM
from tests.support.push_service import PushService
from tests.test_needs_input import COLOUR, ask
from tests.test_stack import RunningStack, new_chat, prompt_via_api, running_in, service_pid, start_stack

NOTIFY_JOB = "worker.jobs.notify"
PHONE = "phone"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def push() -> Iterator[PushService]:
    with PushService() as service:
        yield service


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, origin: Origin, llm: FakeLLM, push: PushService
) -> Iterator[RunningStack]:
    """The stack, with a phone registered at the stand-in push service, once the watcher follows the events."""
    tmp = tmp_path_factory.mktemp("watcher")
    running = start_stack(tmp, origin, llm.url, MECODES_OPENCODE_CONFIG=ASK_BASH, MECODES_PUSH_LOOPBACK="on")
    try:
        wait_until(lambda: following(running) >= 1, 60, "the watcher following opencode's events")
        status, key = running.request("GET", "/admin/notifications/key")
        assert status == 200, key
        push.expect_key = key["public_key"]
        subscription, _ = push.subscription(PHONE)
        status, device = running.request("POST", "/admin/notifications/subscriptions", {"subscription": subscription})
        assert status == 201, device
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGTERM)
            running.proc.wait(60)
    assert push.errors() == []


@pytest.fixture(scope="module")
def redis(stack: RunningStack) -> Redis:
    return Redis(port=int(stack.env["MECODES_REDIS_PORT"]))


def following(stack: RunningStack) -> int:
    """How many times the watcher (re)connected to opencode's event stream, from the stack's log."""
    return stack.log.read_text(errors="replace").count("watcher INFO following")


def chat_on_a_new_repo(stack: RunningStack, origin: Origin, prompt: str) -> dict[str, Any]:
    repo = f"watch{uuid.uuid4().hex[:6]}/app"
    origin.create(repo)
    return new_chat(stack, repo, prompt)


def told(push: PushService, chat: dict[str, Any]) -> list[dict[str, Any]]:
    """What the phone was pushed about the chat (decrypted), oldest first."""
    return [p for p in push.payloads(PHONE) if p["session_id"] == chat["session_id"]]


def told_once(push: PushService, chat: dict[str, Any], kind: str) -> dict[str, Any]:
    """The chat's one push of `kind`, once it came."""
    found = wait_until(lambda: [p for p in told(push, chat) if p["kind"] == kind], 60, f"the chat's {kind} push")
    assert len(found) == 1, found
    return found[0]


def enqueued(redis: Redis, chat: dict[str, Any]) -> list[str]:
    """The keys of the events the watcher enqueued for the chat (the notify job also refuses a key sent before)."""
    jobs = Job.fetch_many([key.decode().split(":")[-1] for key in redis.scan_iter("rq:job:*")], connection=redis)
    events = [j.args[0] for j in jobs if j is not None and j.func_name == NOTIFY_JOB and j.args]
    return sorted(e["key"] for e in events if e.get("session_id") == chat["session_id"])


def title_of(stack: RunningStack, chat: dict[str, Any]) -> str:
    status, entry = stack.request("GET", f"/admin/chats/{chat['session_id']}")
    assert status == 200, entry
    return entry["title"]


def expected(stack: RunningStack, chat: dict[str, Any], kind: str, body: str) -> dict[str, Any]:
    """The push payload the phone should get (the title on one line)."""
    sid = chat["session_id"]
    title, url, tag = " ".join(title_of(stack, chat).split()), f"/#/chat/{sid}", f"mecodes-{sid}"
    return {"kind": kind, "session_id": sid, "title": title, "body": body, "url": url, "tag": tag}


def pending_request(stack: RunningStack, kind: str, chat: dict[str, Any]) -> dict[str, Any]:
    query = urllib.parse.urlencode({"directory": chat["path"]})

    def listed() -> dict[str, Any] | None:
        status, requests = stack.request("GET", f"/{kind}?{query}")
        assert status == 200, requests
        return next((r for r in requests if r["sessionID"] == chat["session_id"]), None)

    return wait_until(listed, 60, f"the chat's {kind}")


def answer(stack: RunningStack, kind: str, chat: dict[str, Any], request: dict[str, Any], body: dict[str, Any]) -> None:
    query = urllib.parse.urlencode({"directory": chat["path"]})
    status, result = stack.request("POST", f"/{kind}/{request['id']}/reply?{query}", body)
    assert (status, result) == (200, True)


def restart_watcher(stack: RunningStack) -> None:
    """SIGKILL the watcher; procman starts it again."""
    before = following(stack)
    watcher = psutil.Process(service_pid(stack, "watcher"))
    watcher.kill()
    watcher.wait(10)
    wait_until(lambda: following(stack) > before, 60, "the watcher back and following")


def test_a_finished_turn_is_told_once_with_its_first_line(
    stack: RunningStack, origin: Origin, push: PushService
) -> None:
    chat = chat_on_a_new_repo(stack, origin, "SAY All done: 3 files changed\n\nThe details follow.")
    first = told_once(push, chat, "finished")
    assert first == expected(stack, chat, "finished", "All done: 3 files changed")

    prompt_via_api(stack, chat, "SAY Second answer")
    wait_until(lambda: len(told(push, chat)) == 2, 60, "the second turn told")
    assert [e["body"] for e in told(push, chat)] == ["All done: 3 files changed", "Second answer"]


def test_a_failed_reply_is_told_with_its_error(stack: RunningStack, origin: Origin, push: PushService) -> None:
    chat = chat_on_a_new_repo(stack, origin, "FAIL Incorrect API key provided")
    event = told_once(push, chat, "failed")
    assert event == expected(stack, chat, "failed", "Incorrect API key provided")
    assert [e["kind"] for e in told(push, chat)] == ["failed"]


def test_a_question_and_a_permission_are_told_as_needs_input(
    stack: RunningStack, origin: Origin, push: PushService
) -> None:
    chat = chat_on_a_new_repo(stack, origin, ask(COLOUR))
    event = told_once(push, chat, "needs-input")
    assert event == expected(stack, chat, "needs-input", COLOUR["question"])
    answer(stack, "question", chat, pending_request(stack, "question", chat), {"answers": [["Blue"]]})
    told_once(push, chat, "finished")

    prompt_via_api(stack, chat, "RUN touch allowed.txt")
    wait_until(lambda: len(told(push, chat)) == 3, 60, "the permission told")
    assert told(push, chat)[2] == expected(stack, chat, "needs-input", "bash: touch allowed.txt")
    answer(stack, "permission", chat, pending_request(stack, "permission", chat), {"reply": "once"})
    wait_until(lambda: len(told(push, chat)) == 4, 60, "the second turn told")
    assert [e["kind"] for e in told(push, chat)] == ["needs-input", "finished", "needs-input", "finished"]


def test_a_stop_the_person_asked_for_tells_nothing(stack: RunningStack, origin: Origin, push: PushService) -> None:
    chat = chat_on_a_new_repo(stack, origin, "WAIT until stopped")
    sid, query = chat["session_id"], urllib.parse.urlencode({"directory": chat["path"]})
    wait_until(lambda: stack.request("GET", f"/admin/chats/{sid}")[1]["status"] == "busy", 60, "the chat busy")
    assert stack.request("POST", f"/session/{sid}/abort?{query}", {})[0] == 200
    wait_until(lambda: stack.request("GET", f"/admin/chats/{sid}")[1]["status"] == "stopped", 60, "the chat stopped")
    prompt_via_api(stack, chat, "SAY Carried on")
    told_once(push, chat, "finished")
    assert [e["body"] for e in told(push, chat)] == ["Carried on"]  # nothing for the stopped turn


def test_a_watcher_restarted_in_the_middle_of_a_turn_tells_its_end_once(
    stack: RunningStack, origin: Origin, push: PushService, redis: Redis
) -> None:
    """The turn waits on a permission; the watcher is killed, the permission granted and the turn ends while it is
    down or starting: told once when it is back. Killed again after that: nothing is told twice."""
    chat = chat_on_a_new_repo(stack, origin, "RUN echo restarted")
    told_once(push, chat, "needs-input")
    request = pending_request(stack, "permission", chat)
    watcher = psutil.Process(service_pid(stack, "watcher"))
    before = following(stack)
    watcher.kill()
    answer(stack, "permission", chat, request, {"reply": "once"})
    wait_until(lambda: following(stack) > before, 60, "the watcher back and following")
    assert told_once(push, chat, "finished")["body"] == "Done."

    restart_watcher(stack)
    later = chat_on_a_new_repo(stack, origin, "SAY Later")
    told_once(push, later, "finished")  # the watcher has read everything up to now
    assert [e["kind"] for e in told(push, chat)] == ["needs-input", "finished"]
    # and the watcher itself enqueued each event once (the notify job would also refuse a key sent before)
    assert [k.split(":")[0] for k in enqueued(redis, chat)] == ["finished", "needs-input"], enqueued(redis, chat)


def test_a_turn_cut_short_by_opencode_dying_is_told_interrupted(
    stack: RunningStack, origin: Origin, push: PushService
) -> None:
    """opencode is killed (SIGKILL) while the agent's command runs; procman starts it again, and the watcher, once
    connected again, tells the chat interrupted, saying why. (Last: opencode restarts under the module's stack.)"""
    chat = chat_on_a_new_repo(stack, origin, "RUN sleep 300")
    answer(stack, "permission", chat, pending_request(stack, "permission", chat), {"reply": "once"})
    command = wait_until(lambda: running_in(chat["path"]), 60, "the agent's command")[0]
    psutil.Process(service_pid(stack, "opencode")).send_signal(signal.SIGKILL)
    event = told_once(push, chat, "interrupted")
    assert event == expected(stack, chat, "interrupted", event["body"])
    assert event["body"].startswith("opencode stopped while the agent was answering (killed by signal 9"), event
    assert event["body"].endswith("the step “bash: sleep 300” was left running"), event
    assert [e["kind"] for e in told(push, chat)] == ["needs-input", "interrupted"]
    with contextlib.suppress(psutil.NoSuchProcess):
        command.kill()
