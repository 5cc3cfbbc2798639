"""The chat list answers from what is cheap and current (domain.chat_list): quiet chats cost no git and no opencode
call of their own, a released instance is never woken, and what changed shows in the next list. Real opencode with
the stand-in model, seen through a proxy that notes each call the stack makes to it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from domain.agent_instances import SETTLED_KEY
from domain.opencode import Opencode
from domain.release import release_idle_instances
from domain.work_states import KEY as WORK_STATES_KEY
from tests.conftest import OpencodeServer, Origin, Stack, StackFactory, git, wait_until
from tests.support.counting_proxy import CountingProxy
from tests.support.githttp import GitHttpServer
from tests.test_agent import answering_server, listed, llm, replies  # noqa: F401 - fixtures
from tests.test_chats import new_chat, oc


@pytest.fixture
def proxy(answering_server: OpencodeServer) -> Iterator[CountingProxy]:  # noqa: F811
    with CountingProxy(answering_server.url) as counting:
        yield counting


@pytest.fixture
def stack(git_server: GitHttpServer, stack_factory: StackFactory, proxy: CountingProxy) -> Stack:
    return stack_factory(git_server.base_url, OPENCODE_URL=proxy.url, MECODES_WORK_STATE_MAX_AGE="0")


@pytest.fixture
def repo(origin: Origin) -> str:
    name = f"list{uuid.uuid4().hex[:6]}/app"
    origin.create(name)
    return name


def quiet(stack: Stack, chat: dict[str, Any], status: str = "idle") -> dict[str, Any]:
    """The chat's entry once it is remembered as quiet: its agent settled, what its worktree holds remembered."""
    redis = Redis.from_url(stack.settings.redis_url)

    def remembered() -> dict[str, Any] | None:
        entry = listed(stack, chat["session_id"])
        held = json.loads(redis.hget(WORK_STATES_KEY, chat["path"]) or "{}")
        return entry if entry["status"] == status and redis.hget(SETTLED_KEY, chat["path"]) and held["idle"] else None

    return wait_until(remembered, 60, f"the chat to be remembered {status}")


def prompt(url: str, chat: dict[str, Any], text: str) -> None:
    oc(
        url,
        "POST",
        f"/session/{chat['session_id']}/prompt_async",
        chat["path"],
        {"parts": [{"type": "text", "text": text}]},
    )


def test_a_list_of_quiet_chats_asks_opencode_once(
    stack: Stack, repo: str, origin: Origin, proxy: CountingProxy
) -> None:
    other = f"list{uuid.uuid4().hex[:6]}/other"
    origin.create(other)
    answered = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    failed = new_chat(stack, repo=other, prompt="FAIL the provider refused the API key")["result"]
    quiet(stack, answered)
    assert quiet(stack, failed, "error")["last_error"] == "the provider refused the API key"

    proxy.asked.clear()
    chats = {c["session_id"]: c for c in stack.client.get("/admin/chats").get_json()["chats"]}
    assert proxy.asked == [("GET", "/experimental/session", None)]
    assert (chats[answered["session_id"]]["status"], chats[answered["session_id"]]["dirty"]) == ("idle", False)
    assert chats[failed["session_id"]]["last_error"] == "the provider refused the API key"

    # A new turn updates the session: the next list asks again, and sees it working.
    prompt(proxy.url, answered, "WAIT for a long task")
    assert listed(stack, answered["session_id"])["status"] == "busy"
    oc(proxy.url, "POST", f"/session/{answered['session_id']}/abort", answered["path"])


def test_a_file_the_agent_changed_is_dirty_in_the_next_list(stack: Stack, repo: str, proxy: CountingProxy) -> None:
    chat = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    assert quiet(stack, chat)["dirty"] is False
    prompt(proxy.url, chat, "RUN echo more >> file0.txt")  # a tracked file: the worktree's folder keeps its mtime
    wait_until(lambda: "Done." in replies(proxy.url, chat), 60, "the agent's command and reply")
    assert listed(stack, chat["session_id"])["dirty"] is True


def test_changes_made_beside_the_agent_show_in_the_next_list(stack: Stack, repo: str) -> None:
    chat = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    assert quiet(stack, chat)["dirty"] is False
    with open(f"{chat['path']}/notes.txt", "w") as new_file:
        new_file.write("new and uncommitted\n")
    assert listed(stack, chat["session_id"])["dirty"] is True
    git("add", "-A", cwd=chat["path"])
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "notes", cwd=chat["path"])
    entry = listed(stack, chat["session_id"])
    assert (entry["dirty"], entry["unpushed_commits"]) == (False, 1)


def test_the_periodic_job_sees_what_no_mtime_shows(
    git_server: GitHttpServer, stack_factory: StackFactory, proxy: CountingProxy, repo: str
) -> None:
    stack = stack_factory(git_server.base_url, OPENCODE_URL=proxy.url, MECODES_WORK_STATE_MAX_AGE="1")
    chat = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    quiet(stack, chat)
    with open(f"{chat['path']}/file1.txt", "a") as tracked:  # as a process the agent left running would
        tracked.write("changed in place\n")
    assert wait_until(lambda: listed(stack, chat["session_id"])["dirty"], 30, "the periodic look to see the change")


def test_listing_never_wakes_a_released_instance(
    stack: Stack,
    repo: str,
    proxy: CountingProxy,
    answering_server: OpencodeServer,  # noqa: F811
) -> None:
    chat = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    quiet(stack, chat)
    redis = Redis.from_url(stack.settings.redis_url)
    released = release_idle_instances(Opencode(proxy.url), redis, idle_seconds=0)
    assert chat["path"] in released["released"], released
    built = answering_server.instances_created(chat["path"])
    proxy.asked.clear()
    for _ in range(3):
        assert listed(stack, chat["session_id"])["status"] == "idle"
    assert [directory for _, _, directory in proxy.asked if directory] == []
    assert answering_server.instances_created(chat["path"]) == built
