"""Turns cut short by a restart are reported `interrupted`, with when and why, and carry on with Continue — or by
themselves with MECODES_AUTO_CONTINUE. The real stack (bin/start), the real opencode, a stand-in model."""

from __future__ import annotations

import contextlib
import signal
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import Origin, wait_until
from tests.support.fake_llm import FakeLLM
from tests.test_stack import RunningStack, new_chat, running_in, service_pid, start_stack, stop


def chat_state(stack: RunningStack, session_id: str) -> dict[str, Any]:
    status, body = stack.request("GET", f"/admin/chats/{session_id}")
    assert status == 200, body
    return body


def becomes(stack: RunningStack, session_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    """The chat once it has `status`; while opencode restarts the API answers 503, and that is waited out."""

    def state() -> dict[str, Any] | None:
        code, body = stack.request("GET", f"/admin/chats/{session_id}")
        assert code in (200, 503), body
        return body if code == 200 and body["status"] == status else None

    return wait_until(state, timeout, f"chat {session_id} {status}")


def last_message(stack: RunningStack, chat: dict[str, Any]) -> dict[str, Any]:
    query = urllib.parse.urlencode({"directory": chat["path"], "limit": 1})
    status, messages = stack.request("GET", f"/session/{chat['session_id']}/message?{query}")
    assert status == 200, messages
    return messages[-1]


def continued_to_the_end(stack: RunningStack, chat: dict[str, Any]) -> dict[str, Any]:
    """The reply after Continue: completed, answering the "keep going" prompt."""

    def completed() -> dict[str, Any] | None:
        last = last_message(stack, chat)
        return last if last["info"]["role"] == "assistant" and last["info"]["time"].get("completed") else None

    reply = wait_until(completed, 60, "the continued reply")
    assert "Keep going" in "".join(p.get("text", "") for p in reply["parts"]), reply
    becomes(stack, chat["session_id"], "idle")
    return reply


def sigterm(stack: RunningStack) -> None:
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(60) == 0


def test_turns_cut_short_are_interrupted_and_continue(tmp_path: Path, origin: Origin) -> None:
    """A deploy (SIGTERM) in the middle of a streaming reply, then opencode killed (SIGKILL) in the middle of a
    command: each time the chat reads `interrupted` with why, and Continue closes the step left running and brings
    a finished reply. A second Continue is refused. With MECODES_AUTO_CONTINUE, a restart carries on by itself."""
    repo = f"cut{uuid.uuid4().hex[:6]}/app"
    origin.create(repo)
    with FakeLLM() as llm:
        first = start_stack(tmp_path, origin, llm.url)
        try:
            chat = new_chat(first, repo, "SLOW 120 " + "word " * 200)
            sid = chat["session_id"]
            becomes(first, sid, "busy")
            wait_until(lambda: last_message(first, chat)["parts"], 30, "the reply streaming in")
            sigterm(first)
        finally:
            stop(first)

        second = start_stack(tmp_path, origin, llm.url)
        try:
            state = becomes(second, sid, "interrupted")
            assert state["interruption"]["why"].startswith("the stack was restarted while the agent was answering")
            assert state["interruption"]["at"] and state["last_error"] is None, state
            listed = {c["session_id"]: c for c in second.request("GET", "/admin/chats")[1]["chats"]}
            assert listed[sid]["status"] == "interrupted", listed[sid]

            status, done = second.request("POST", f"/admin/chats/{sid}/continue")
            assert status == 200 and done["closed_steps"] == [], done
            status, again = second.request("POST", f"/admin/chats/{sid}/continue")
            assert status == 409, again
            continued_to_the_end(second, chat)
            status, again = second.request("POST", f"/admin/chats/{sid}/continue")
            assert (
                status == 409 and again["message"] == "the chat's last turn was not interrupted; send a message instead"
            )

            # opencode dies (the OOM killer, say) while the agent's command runs; procman starts it again.
            status, sent = second.request("POST", f"/admin/chats/{sid}/prompt", {"text": "RUN sleep 600"})
            assert status == 200 and sent == {"session_id": sid, "sent": True}, sent
            command = wait_until(lambda: running_in(chat["path"]), 60, "the agent's command")[0]
            agent = psutil.Process(service_pid(second, "opencode"))
            agent.send_signal(signal.SIGKILL)
            state = becomes(second, sid, "interrupted")
            why = state["interruption"]["why"]
            assert why.startswith("opencode stopped while the agent was answering (killed by signal 9"), why
            assert why.endswith("the step “bash: sleep 600” was left running"), why
            with contextlib.suppress(psutil.NoSuchProcess):  # procman may have ended it with opencode
                command.kill()

            status, done = second.request("POST", f"/admin/chats/{sid}/continue")
            assert status == 200 and done["closed_steps"] == ["bash: sleep 600"], done
            reply = continued_to_the_end(second, chat)
            query = urllib.parse.urlencode({"directory": chat["path"]})
            messages = second.request("GET", f"/session/{sid}/message?{query}")[1]
            steps = [p for m in messages for p in m["parts"] if p["type"] == "tool"]
            assert steps[-1]["state"]["status"] == "error", steps[-1]
            assert steps[-1]["state"]["error"].startswith("interrupted: opencode stopped"), steps[-1]
            assert reply["info"]["id"] != steps[-1]["messageID"]

            status, _ = second.request("POST", f"/admin/chats/{sid}/prompt", {"text": "SLOW 120 " + "word " * 200})
            assert status == 200
            becomes(second, sid, "busy")
            sigterm(second)
        finally:
            stop(second)

        third = start_stack(tmp_path, origin, llm.url, MECODES_AUTO_CONTINUE="on")
        try:
            jobs = third.request("GET", "/admin/jobs")[1]["jobs"]
            job = next(j for j in jobs if j["kind"] == "continue")
            done = third.wait_job(job)
            assert done["status"] == "finished" and done["result"]["continued"] == [sid], done
            continued_to_the_end(third, chat)
        finally:
            stop(third)
