"""A chat whose agent waits on the person (a question it asked, a permission it asks for) is `needs-input` in the
chat list, says what it waits for, and comes first; answered, it goes back to work and then to idle. The production
stack through Caddy, the real opencode with the stand-in model (`ASK <json>` makes it call opencode's question tool)
and `"permission": {"bash": "ask"}` in the person's opencode settings."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Origin, wait_until
from tests.support.fake_llm import FakeLLM
from tests.test_stack import RunningStack, new_chat

COLOUR = {
    "question": "Which colour should the button be?",
    "header": "Colour",
    "options": [{"label": "Red", "description": "warm"}, {"label": "Blue", "description": "cool"}],
}


def ask(*questions: dict[str, Any]) -> str:
    """The prompt that makes the stand-in model ask these questions through opencode's question tool."""
    return "ASK " + json.dumps({"questions": list(questions)})


@pytest.fixture
def llm(asking_llm: FakeLLM) -> FakeLLM:
    return asking_llm


@pytest.fixture
def stack(asking_stack: RunningStack) -> RunningStack:
    return asking_stack


@pytest.fixture
def repo(origin: Origin) -> str:
    name = f"ask{uuid.uuid4().hex[:6]}/app"
    origin.create(name)
    return name


def chats(stack: RunningStack) -> list[dict[str, Any]]:
    status, body = stack.request("GET", "/admin/chats")
    assert status == 200, body
    return body["chats"]


def listed(stack: RunningStack, chat: dict[str, Any], status: str | set[str]) -> dict[str, Any]:
    """The chat's entry in the list once it reads `status` (one of them)."""
    wanted = {status} if isinstance(status, str) else status

    def found() -> dict[str, Any] | None:
        entry = next(c for c in chats(stack) if c["session_id"] == chat["session_id"])
        return entry if entry["status"] in wanted else None

    return wait_until(found, 60, f"the chat {status}")


def pending(stack: RunningStack, kind: str, chat: dict[str, Any]) -> dict[str, Any]:
    """The one request of `kind` (question, permission) opencode holds for the chat."""
    status, requests = stack.request("GET", f"/{kind}?{urllib.parse.urlencode({'directory': chat['path']})}")
    assert status == 200, requests
    (request,) = [r for r in requests if r["sessionID"] == chat["session_id"]]
    return request


def reply(stack: RunningStack, kind: str, chat: dict[str, Any], path: str, body: dict[str, Any]) -> None:
    """Answer a request as the phone does: opencode's own API, through Caddy."""
    query = urllib.parse.urlencode({"directory": chat["path"]})
    status, answer = stack.request("POST", f"/{kind}/{pending(stack, kind, chat)['id']}/{path}?{query}", body)
    assert (status, answer) == (200, True)


def tool_results(llm: FakeLLM) -> list[str]:
    return [m["content"] for body in llm.requests for m in body["messages"] if m.get("role") == "tool"]


def test_a_question_makes_the_chat_needs_input_first_in_the_list_until_answered(
    stack: RunningStack, origin: Origin, repo: str, llm: FakeLLM
) -> None:
    chat = new_chat(stack, repo, prompt=ask(COLOUR))
    waiting = listed(stack, chat, "needs-input")
    assert waiting["waiting_for"] == {"kind": "question", "summary": COLOUR["question"]}

    other_repo = f"ask{uuid.uuid4().hex[:6]}/other"
    origin.create(other_repo)
    newer = new_chat(stack, other_repo, prompt="Say hello")
    assert listed(stack, newer, "idle")["last_activity"] > waiting["last_activity"]
    assert [c["session_id"] for c in chats(stack)][:2] == [chat["session_id"], newer["session_id"]]
    status, one = stack.request("GET", f"/admin/chats/{chat['session_id']}")
    assert status == 200 and (one["status"], one["waiting_for"]) == ("needs-input", waiting["waiting_for"])

    reply(stack, "question", chat, "reply", {"answers": [["Blue"]]})
    assert listed(stack, chat, "idle")["waiting_for"] is None
    assert any('"Which colour should the button be?"="Blue"' in result for result in tool_results(llm))


def test_a_permission_makes_the_chat_needs_input_until_allowed_or_denied(stack: RunningStack, repo: str) -> None:
    chat = new_chat(stack, repo, prompt="RUN touch allowed.txt")
    waiting = listed(stack, chat, "needs-input")
    assert waiting["waiting_for"] == {"kind": "permission", "summary": "bash: touch allowed.txt"}
    assert not (Path(chat["path"]) / "allowed.txt").exists()
    reply(stack, "permission", chat, "reply", {"reply": "once"})
    listed(stack, chat, "idle")
    assert (Path(chat["path"]) / "allowed.txt").exists()

    status, sent = stack.request("POST", f"/admin/chats/{chat['session_id']}/prompt", {"text": "RUN touch denied.txt"})
    assert status == 200, sent
    assert listed(stack, chat, "needs-input")["waiting_for"]["summary"] == "bash: touch denied.txt"
    reply(stack, "permission", chat, "reply", {"reply": "reject"})
    assert listed(stack, chat, "idle")["last_error"] is None  # a denial ends the turn; it is not a failed reply
    assert not (Path(chat["path"]) / "denied.txt").exists()


def test_a_rejected_question_ends_the_wait(stack: RunningStack, repo: str) -> None:
    chat = new_chat(stack, repo, prompt=ask(COLOUR, {**COLOUR, "header": "Shade", "multiple": True}))
    summary = listed(stack, chat, "needs-input")["waiting_for"]["summary"]
    assert summary == f"{COLOUR['question']} (and 1 more)"
    reply(stack, "question", chat, "reject", {})
    assert listed(stack, chat, "idle")["waiting_for"] is None


def test_a_question_left_by_an_aborted_turn_does_not_count(stack: RunningStack, repo: str) -> None:
    """opencode keeps listing the question of a turn aborted while it waited; the chat is not waiting on it."""
    chat = new_chat(stack, repo, prompt=ask(COLOUR))
    listed(stack, chat, "needs-input")
    query = urllib.parse.urlencode({"directory": chat["path"]})
    assert stack.request("POST", f"/session/{chat['session_id']}/abort?{query}") == (200, True)
    listed(stack, chat, {"idle", "stopped"})  # a stop the person asked for may read as such
    assert pending(stack, "question", chat)["questions"][0]["question"] == COLOUR["question"]

    status, sent = stack.request("POST", f"/admin/chats/{chat['session_id']}/prompt", {"text": "WAIT for it"})
    assert status == 200, sent
    assert listed(stack, chat, "busy")["waiting_for"] is None
    assert stack.request("POST", f"/session/{chat['session_id']}/abort?{query}") == (200, True)
