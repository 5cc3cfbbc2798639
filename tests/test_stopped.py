"""A stop the person asked for (opencode's abort) is no error: the chat reads `stopped`, with no `last_error`, in the
list and on its own, also once its agent's memory was given back; its next reply makes it idle again. Real opencode
with the stand-in model (tests/support/fake_llm.py), whose `WAIT` holds a reply open until it is aborted."""

from __future__ import annotations

from redis import Redis

from domain.opencode import Opencode
from domain.release import release_idle_instances
from tests.conftest import Stack, wait_until
from tests.test_agent import (  # noqa: F401 - fixtures
    answering_opencode,
    answering_server,
    github,
    listed,
    llm,
    replies,
    repo,
    settled,
    stack,
)
from tests.test_chats import new_chat, oc


def test_a_stopped_reply_reads_stopped_not_failed(stack: Stack, repo: str, answering_opencode: str) -> None:  # noqa: F811
    chat = new_chat(stack, repo=repo, prompt="WAIT until the person stops me")["result"]
    session_id = chat["session_id"]
    settled(stack, session_id, "busy")
    oc(answering_opencode, "POST", f"/session/{session_id}/abort", chat["path"])

    entry = settled(stack, session_id, "stopped")
    assert (entry["last_error"], entry["interruption"]) == (None, None)
    one = stack.client.get(f"/admin/chats/{session_id}").get_json()
    assert (one["status"], one["last_error"]) == ("stopped", None)
    # Given back, the chat is answered for from what was remembered: still stopped.
    redis = Redis.from_url(stack.settings.redis_url)
    wait_until(
        lambda: chat["path"] in release_idle_instances(Opencode(answering_opencode), redis, 0)["released"],
        30,
        "the stopped chat's agent to be released",
    )
    assert listed(stack, session_id)["status"] == "stopped"

    body = {"parts": [{"type": "text", "text": "Carry on"}]}
    oc(answering_opencode, "POST", f"/session/{session_id}/prompt_async", chat["path"], body)
    wait_until(lambda: "Echo: Carry on" in replies(answering_opencode, chat), 30, "the next reply")
    assert settled(stack, session_id, "idle")["last_error"] is None
