"""Cancelling jobs (DELETE /admin/jobs/{id}, and DELETE /admin/chats/{id} on a chat still being made): a waiting job
at once, a running one at its next cancel point, with what it made rolled back as a failure does. A real worker,
real git over HTTP (slowed down, so a clone can be caught mid-transfer) and the real `opencode serve`."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from redis import Redis

from domain.layout import Layout
from domain.locks import lock_key
from domain.names import parse_repo
from domain.opencode import Opencode
from tests.conftest import Origin, Stack, StackFactory, git, wait_until
from tests.support.counting_proxy import CountingProxy
from tests.support.githttp import GitHttpServer

CANCELED_SOON = 10  # seconds from the DELETE to `canceled` (measured: about 1 s)


class PromptHoldingProxy(CountingProxy):
    """opencode behind a proxy that holds `prompt_async` until released: a chat job caught in its last phase."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.holding = threading.Event()
        self.release = threading.Event()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.path.split("?")[0].endswith("/prompt_async"):
            self.holding.set()
            self.release.wait(60)
        super().serve(handler)


@pytest.fixture
def server(origin: Origin) -> Iterator[GitHttpServer]:
    with GitHttpServer(origin.root, delay=0.05) as served:
        yield served


@pytest.fixture
def proxy(opencode_url: str) -> Iterator[PromptHoldingProxy]:
    with PromptHoldingProxy(opencode_url) as held:
        yield held
        held.release.set()


@pytest.fixture
def stack(server: GitHttpServer, proxy: PromptHoldingProxy, stack_factory: StackFactory) -> Stack:
    return stack_factory(server.base_url, OPENCODE_URL=proxy.url)


@pytest.fixture
def big_repo(origin: Origin) -> str:
    """A repo whose clone takes about 30 s through the slowed server."""
    name = f"cancel{uuid.uuid4().hex[:6]}/big"
    origin.create(name, big_bytes=10_000_000)
    return name


def receiving(stack: Stack, job: dict[str, Any]) -> bool:
    progress = stack.status(job).get("progress") or {}
    return progress.get("phase") == "Receiving objects" and 0 < (progress.get("percent") or 0) < 100


def cancel(stack: Stack, job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = stack.client.delete(job["url"])
    return response.status_code, response.get_json()


def canceled(stack: Stack, job: dict[str, Any]) -> dict[str, Any]:
    return wait_until(lambda: (b := stack.status(job))["status"] == "canceled" and b, CANCELED_SOON, "canceled")


def leftovers(stack: Stack, repo: str, opencode_url: str) -> dict[str, Any]:
    """Everything a chat or clone of `repo` could have left: all empty once it is cancelled."""
    layout, name = Layout(stack.settings.data_dir), parse_repo(repo)
    bare = layout.repo_path(name)
    return {
        "worktrees": sorted(p.name for p in layout.worktrees_dir.iterdir()),
        "branches": git("for-each-ref", "--format=%(refname)", "refs/heads/", cwd=bare) if bare.exists() else "",
        "staging": sorted(p.name for p in layout.tmp_dir.iterdir()),
        "lock": Redis.from_url(stack.settings.redis_url).get(lock_key(name)),
        "sessions": [s["id"] for s in Opencode(opencode_url).sessions() if str(layout.root) in s["directory"]],
    }


NOTHING = {"worktrees": [], "branches": "", "staging": [], "lock": None, "sessions": []}


def test_a_queued_chat_is_cancelled_at_once(stack: Stack, server: GitHttpServer, big_repo: str, origin: Origin) -> None:
    clone = stack.client.post("/admin/repos/clone", json={"repo": big_repo}).get_json()
    wait_until(lambda: receiving(stack, clone), 30, "the clone to be receiving objects")
    other = f"cancel{uuid.uuid4().hex[:6]}/small"
    origin.create(other)
    chat = stack.client.post("/admin/chats", json={"repo": other, "prompt": "never started"}).get_json()
    assert stack.status(chat)["status"] == "queued"  # the one worker is busy with the clone

    status, body = cancel(stack, chat)
    assert status == 200 and body["status"] == "canceled", body
    assert body["error"] == "cancelled on request before it started"
    assert cancel(stack, chat)[0] == 200  # again: nothing more to do

    assert cancel(stack, clone)[0] == 202  # frees the worker, so the proof below is quick
    canceled(stack, clone)
    server.delay = 0
    assert stack.api.clone(other)["status"] == "finished"  # queued after the chat: the worker went past it
    assert stack.status(chat)["status"] == "canceled"
    assert leftovers(stack, other, stack.settings.opencode_url) == NOTHING


def test_a_running_clone_is_stopped_and_what_waited_on_it_fails_saying_why(
    stack: Stack, server: GitHttpServer, big_repo: str
) -> None:
    clone = stack.client.post("/admin/repos/clone", json={"repo": big_repo}).get_json()
    wait_until(lambda: receiving(stack, clone), 30, "the clone to be receiving objects")
    worktree = stack.client.post("/admin/worktrees", json={"repo": big_repo, "session_id": "waits"}).get_json()
    assert worktree["depends_on"] == [clone["id"]] and stack.status(worktree)["status"] == "deferred"

    asked = time.monotonic()
    status, body = cancel(stack, clone)
    assert status == 202 and body["status"] == "started", body
    done = canceled(stack, clone)
    took = time.monotonic() - asked
    assert done["error"] == "cancelled on request" and done["ended_at"], done
    print(f"running clone cancelled in {took:.2f} s")

    failed = stack.api.wait(worktree)
    assert failed["status"] == "failed"
    assert failed["error"] == f"the clone this worktree needs failed (job {clone['id']}): cancelled on request"
    assert not Layout(stack.settings.data_dir).is_cached(parse_repo(big_repo))
    assert leftovers(stack, big_repo, stack.settings.opencode_url) == NOTHING

    server.delay = 0
    assert stack.api.clone(big_repo)["status"] == "finished"  # the worker goes on as before
    assert cancel(stack, clone)[0] == 200
    finished = stack.api.clone(big_repo)
    status, body = cancel(stack, finished)
    assert status == 409
    assert body["message"] == f"job {finished['id']} already ended (finished); there is nothing to cancel"


def test_a_chat_cancelled_while_cloning_leaves_nothing(stack: Stack, big_repo: str) -> None:
    chat = stack.client.post("/admin/chats", json={"repo": big_repo, "prompt": "never sent"}).get_json()
    wait_until(lambda: receiving(stack, chat), 30, "the chat's clone to be receiving objects")
    assert cancel(stack, chat)[0] == 202
    done = canceled(stack, chat)
    assert done["error"] == "cancelled on request in phase repo; what it made was rolled back"
    assert not Layout(stack.settings.data_dir).is_cached(parse_repo(big_repo))
    assert leftovers(stack, big_repo, stack.settings.opencode_url) == NOTHING


def test_deleting_a_chat_still_being_made_cancels_it_and_rolls_it_back(
    stack: Stack, server: GitHttpServer, proxy: PromptHoldingProxy, origin: Origin, opencode_url: str
) -> None:
    repo = f"cancel{uuid.uuid4().hex[:6]}/app"
    origin.create(repo)
    server.delay = 0
    stack.api.clone(repo)
    chat = stack.client.post("/admin/chats", json={"repo": repo, "prompt": "do it"}).get_json()
    assert proxy.holding.wait(30), "the chat job to send its prompt"
    layout = Layout(stack.settings.data_dir)
    (session_id,) = leftovers(stack, repo, opencode_url)["sessions"]
    assert stack.status(chat)["progress"]["step"] == "prompt: send the task"

    response = stack.client.delete(f"/admin/chats/{session_id}")
    assert response.status_code == 202 and response.get_json()["id"] == chat["id"], response.get_json()
    proxy.release.set()
    done = canceled(stack, chat)
    assert done["error"] == "cancelled on request in phase prompt; what it made was rolled back"
    assert leftovers(stack, repo, opencode_url) == NOTHING  # worktree, its new branch and the session gone
    assert Opencode(opencode_url).session(session_id) is None
    assert layout.is_cached(parse_repo(repo))  # what was there before stays
    assert stack.client.delete(f"/admin/chats/{session_id}").status_code == 404


def test_bad_job_ids(stack: Stack) -> None:
    for bad in ("-x", "a" * 200, "..%2f..", "x y"):
        response = stack.client.delete(f"/admin/jobs/{bad}")
        assert response.status_code in {404, 422}, (bad, response.status_code)
        if response.status_code == 422:
            assert "job_id" in response.get_json()["errors"]["path"]
    unknown = stack.client.delete(f"/admin/jobs/{uuid.uuid4().hex}")
    assert unknown.status_code == 404 and "no job" in unknown.get_json()["message"]
