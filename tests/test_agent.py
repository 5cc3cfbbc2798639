"""Real agent turns: the real `opencode serve` with a stand-in model (tests/support/fake_llm.py), so a chat's
prompt is answered, a failed reply shows as the chat's error, the agent's own commit goes out as a PR, and idle
agents' memory is given back."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from domain.agent_instances import RELEASED_KEY
from domain.opencode import Opencode
from domain.release import release_idle_instances
from tests.conftest import SECRET_TOKEN, OpencodeServer, Origin, Stack, StackFactory, git, start_opencode, wait_until
from tests.support.fake_github import FakeGitHub
from tests.support.fake_llm import FakeLLM
from tests.support.githttp import GitHttpServer
from tests.test_chats import new_chat, oc


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def answering_server(tmp_path_factory: pytest.TempPathFactory, llm: FakeLLM) -> Iterator[OpencodeServer]:
    server = start_opencode(tmp_path_factory.mktemp("opencode-with-llm"), llm.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def answering_opencode(answering_server: OpencodeServer) -> str:
    return answering_server.url


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(SECRET_TOKEN, []) as fake:
        yield fake


@pytest.fixture
def stack(git_server: GitHttpServer, github: FakeGitHub, stack_factory: StackFactory, answering_opencode: str) -> Stack:
    return stack_factory(git_server.base_url, OPENCODE_URL=answering_opencode, GITHUB_API_URL=github.url)


@pytest.fixture
def repo(origin: Origin) -> str:
    name = f"agent{uuid.uuid4().hex[:6]}/app"
    origin.create(name)
    return name


def listed(stack: Stack, session_id: str) -> dict[str, Any]:
    chats = stack.client.get("/admin/chats").get_json()["chats"]
    return next(c for c in chats if c["session_id"] == session_id)


def settled(stack: Stack, session_id: str, status: str) -> dict[str, Any]:
    """The chat's entry once its reply is over and it shows `status`."""
    return wait_until(lambda: (c := listed(stack, session_id))["status"] == status and c, 60, f"the chat {status}")


def replies(url: str, chat: dict[str, Any]) -> list[str]:
    messages = oc(url, "GET", f"/session/{chat['session_id']}/message", chat["path"])
    return [p["text"] for m in messages if m["info"]["role"] == "assistant" for p in m["parts"] if p["type"] == "text"]


def test_the_prompt_is_answered(stack: Stack, repo: str, llm: FakeLLM, answering_opencode: str) -> None:
    chat = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    entry = settled(stack, chat["session_id"], "idle")
    assert entry["last_error"] is None
    assert wait_until(lambda: "Echo: Say hello" in replies(answering_opencode, chat), 30, "the streamed reply")
    assert any("Say hello" in str(r["messages"]) for r in llm.requests)


def test_a_failed_reply_is_the_chats_error_until_the_next_one_succeeds(
    stack: Stack, repo: str, answering_opencode: str
) -> None:
    chat = new_chat(stack, repo=repo, prompt="FAIL the provider refused the API key")["result"]
    entry = settled(stack, chat["session_id"], "error")
    assert entry["last_error"] == "the provider refused the API key"

    body = {"parts": [{"type": "text", "text": "Try again"}]}
    oc(answering_opencode, "POST", f"/session/{chat['session_id']}/prompt_async", chat["path"], body)
    wait_until(lambda: "Echo: Try again" in replies(answering_opencode, chat), 30, "the second reply")
    assert settled(stack, chat["session_id"], "idle")["last_error"] is None


def test_the_agents_commit_goes_out_as_a_pull_request(
    stack: Stack, repo: str, origin: Origin, github: FakeGitHub
) -> None:
    """Fire and forget, end to end: the agent edits and commits in its worktree, the phone asks for a push."""
    author = "-c user.name=Agent -c user.email=agent@example.com"
    task = f"RUN echo fixed > fix.txt && git add fix.txt && git {author} commit -qm 'Fix the bug'"
    chat = new_chat(stack, repo=repo, prompt=task)["result"]
    # status and the commit count are two git commands; a list taken while the agent commits may see the staged
    # file and the new commit at once, so what the commit left is read once the turn is over
    wait_until(lambda: listed(stack, chat["session_id"])["unpushed_commits"] == 1, 60, "a commit")
    entry = settled(stack, chat["session_id"], "idle")
    assert (entry["unpushed_commits"], entry["dirty"]) == (1, False)

    pushed = stack.api.wait(stack.client.post(f"/admin/chats/{chat['session_id']}/push", json={}).get_json())
    assert pushed["status"] == "finished", pushed
    head = git("rev-parse", "HEAD", cwd=Path(chat["path"])).strip()
    assert git("rev-parse", f"refs/heads/{chat['branch']}", cwd=origin.root / f"{repo}.git").strip() == head
    assert [(p["title"], p["head"]) for p in github.pulls] == [("Fix the bug", chat["branch"])]
    assert listed(stack, chat["session_id"])["unpushed_commits"] == 0


class DisposedInstances:
    """Directories whose opencode instance was disposed, as opencode announces them on its global event stream."""

    def __init__(self, url: str):
        self.seen: list[str] = []
        self._response = urllib.request.urlopen(f"{url}/global/event", timeout=120)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # AttributeError: closed under the reader
            for line in self._response:
                if line.startswith(b"data:"):
                    payload = json.loads(line[5:]).get("payload") or {}
                    if payload.get("type") == "server.instance.disposed":
                        self.seen.append(payload["properties"]["directory"])

    def close(self) -> None:
        self._response.close()


def test_idle_agents_give_their_memory_back_busy_ones_never(
    stack: Stack, repo: str, origin: Origin, answering_server: OpencodeServer
) -> None:
    answering_opencode = answering_server.url
    opencode, redis = Opencode(answering_opencode), Redis.from_url(stack.settings.redis_url)
    redis.delete(RELEASED_KEY)
    answered = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    other, failing_repo = f"agent{uuid.uuid4().hex[:6]}/busy", f"agent{uuid.uuid4().hex[:6]}/failing"
    origin.create(other)
    origin.create(failing_repo)
    working = new_chat(stack, repo=other, prompt="WAIT for a long task")["result"]
    failed = new_chat(stack, repo=failing_repo, prompt="FAIL the provider refused the API key")["result"]
    settled(stack, answered["session_id"], "idle")
    settled(stack, working["session_id"], "busy")
    settled(stack, failed["session_id"], "error")
    disposed = DisposedInstances(answering_opencode)
    try:
        assert release_idle_instances(opencode, redis, idle_seconds=3600)["released"] == []  # not idle for long

        first = release_idle_instances(opencode, redis, idle_seconds=0)
        assert {answered["path"], failed["path"]} <= set(first["released"]) and working["path"] in first["busy"]
        wait_until(lambda: failed["path"] in disposed.seen, 10, "opencode to dispose the idle chats' instances")
        built = {c["path"]: answering_server.instances_created(c["path"]) for c in (answered, failed)}
        assert all(built.values()), built  # the log says when an instance is built
        # Reading state does not wake a released chat: the list and the worktrees answer from what was remembered.
        assert listed(stack, working["session_id"])["status"] == "busy" and working["path"] not in disposed.seen
        assert listed(stack, answered["session_id"])["status"] == "idle"
        assert (listed(stack, failed["session_id"])["status"], listed(stack, failed["session_id"])["last_error"]) == (
            "error",
            "the provider refused the API key",
        )
        worktrees = stack.client.get("/admin/worktrees").get_json()["worktrees"]
        assert {w["opencode_session_id"]: w["status"] for w in worktrees}[answered["session_id"]] == "idle"
        # The chat is whole: its messages are read back (a fresh instance: opencode logs it, in order, so by then
        # any instance the reads above had built would be logged too), and it answers the next prompt.
        assert "Echo: Say hello" in replies(answering_opencode, answered)
        rebuilt = built[answered["path"]] + 1
        wait_until(lambda: answering_server.instances_created(answered["path"]) == rebuilt, 10, "the rebuild logged")
        assert answering_server.instances_created(failed["path"]) == built[failed["path"]]
        assert answered["path"] not in release_idle_instances(opencode, redis, idle_seconds=0)["released"]  # once
        body = {"parts": [{"type": "text", "text": "And again"}]}
        oc(answering_opencode, "POST", f"/session/{answered['session_id']}/prompt_async", answered["path"], body)
        wait_until(lambda: "Echo: And again" in replies(answering_opencode, answered), 30, "the next reply")
        settled(stack, answered["session_id"], "idle")
        assert answered["path"] in release_idle_instances(opencode, redis, idle_seconds=0)["released"]  # changed

        # Deleting a chat lets go of its instance too.
        count = disposed.seen.count(working["path"])
        deleted = stack.api.wait(stack.client.delete(f"/admin/chats/{working['session_id']}?force=true").get_json())
        assert deleted["status"] == "finished" and deleted["result"]["aborted"] is True, deleted
        wait_until(lambda: disposed.seen.count(working["path"]) > count, 10, "the deleted chat's instance to go")
    finally:
        disposed.close()


def test_the_release_job_runs_by_itself(
    git_server: GitHttpServer, github: FakeGitHub, stack_factory: StackFactory, answering_opencode: str, repo: str
) -> None:
    stack = stack_factory(
        git_server.base_url,
        OPENCODE_URL=answering_opencode,
        GITHUB_API_URL=github.url,
        MECODES_AGENT_RELEASE_INTERVAL="1",
        MECODES_AGENT_IDLE_MINUTES="0",
    )
    chat = new_chat(stack, repo=repo, prompt="Say hello")["result"]
    settled(stack, chat["session_id"], "idle")

    def released() -> dict[str, Any] | None:
        jobs = stack.client.get("/admin/jobs?limit=100").get_json()["jobs"]
        runs = [j for j in jobs if j["kind"] == "release" and j["status"] == "finished"]
        return next((j for j in runs if chat["path"] in j["result"]["released"]), None)

    assert wait_until(released, 30, "a periodic release of the idle chat")
