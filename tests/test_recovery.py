"""A worker killed mid-job: the job ends failed at restart, nothing half-made counts, the next request works."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

from domain.layout import Layout
from domain.locks import lock_key
from domain.names import parse_repo
from tests.conftest import Origin, Stack, StackFactory, git, wait_until
from tests.support.githttp import GitHttpServer
from worker.__main__ import STOPPED
from worker.recovery import ABANDONED, fail_abandoned_jobs


@pytest.fixture
def server(origin: Origin) -> Iterator[GitHttpServer]:
    with GitHttpServer(origin.root, delay=0.02) as server:
        yield server


@pytest.fixture
def stack(server: GitHttpServer, stack_factory: StackFactory) -> Stack:
    return stack_factory(server.base_url)


def _staging(layout: Layout, prefix: str) -> list[Path]:
    return [p for p in layout.tmp_dir.iterdir() if p.name.startswith(prefix)]


def test_killed_mid_clone(stack: Stack, server: GitHttpServer, origin: Origin) -> None:
    name = f"kill{uuid.uuid4().hex[:6]}/big"
    origin.create(name, big_bytes=4_000_000)
    repo, layout = parse_repo(name), Layout(stack.settings.data_dir)
    job = stack.client.post("/admin/repos/clone", json={"repo": name}).get_json()

    def receiving() -> bool:
        progress = stack.status(job).get("progress") or {}
        return progress.get("phase") == "Receiving objects" and 0 < (progress.get("percent") or 0) < 100

    wait_until(receiving, 30, "the clone to be receiving objects")
    stack.worker.kill()
    assert stack.status(job)["status"] == "started"  # RQ alone would leave it like this for minutes
    assert not layout.is_cached(repo)
    assert [p for p in _staging(layout, "clone-") if repo.slug in p.name], "the half-made clone is in tmp/"

    stack.restart_worker()
    failed = wait_until(lambda: (b := stack.status(job))["status"] == "failed" and b, 10, "the job to end failed")
    assert failed["error"] == ABANDONED
    assert not _staging(layout, "clone-")
    assert Redis.from_url(stack.settings.redis_url).get(lock_key(repo)) is None
    assert name not in [r["repo"] for r in stack.client.get("/admin/repos").get_json()["repos"]]

    server.delay = 0
    retried = stack.api.clone(name)
    assert retried["id"] != job["id"] and retried["status"] == "finished", retried
    git("fsck", "--no-progress", cwd=layout.repo_path(repo))


def test_killed_mid_worktree(stack: Stack, server: GitHttpServer, origin: Origin, tmp_path: Path) -> None:
    name = f"kill{uuid.uuid4().hex[:6]}/wt"
    origin.create(name)
    server.delay = 0
    repo, layout = parse_repo(name), Layout(stack.settings.data_dir)
    stack.api.clone(name)
    # A post-checkout hook that signals, then blocks: the job is caught inside `git worktree add`.
    marker = tmp_path / "checking-out"
    hook = layout.repo_path(repo) / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 30\n")
    hook.chmod(0o755)

    job = stack.client.post("/admin/worktrees", json={"repo": name, "session_id": "victim"}).get_json()
    wait_until(marker.exists, 30, "the checkout to start")
    stack.worker.kill()
    hook.unlink()
    assert not layout.worktree_path(repo, "victim").exists()

    stack.restart_worker()
    failed = wait_until(lambda: (b := stack.status(job))["status"] == "failed" and b, 10, "the job to end failed")
    assert failed["error"] == ABANDONED
    assert not _staging(layout, "worktree-")
    assert "victim" not in git("worktree", "list", "--porcelain", cwd=layout.repo_path(repo))
    listed = stack.client.get("/admin/worktrees").get_json()["worktrees"]
    assert not [w for w in listed if w["session_id"] == "victim"]

    retried = stack.api.worktree(name, "victim")
    assert retried["status"] == "finished" and retried["result"]["created"] is True, retried
    assert (layout.worktree_path(repo, "victim") / "file0.txt").exists()


def test_second_sigterm_fails_the_running_job_at_once(stack: Stack, origin: Origin) -> None:
    """What the process manager does when the machine stops and a clone outlasts the grace period."""
    name = f"stop{uuid.uuid4().hex[:6]}/big"
    origin.create(name, big_bytes=4_000_000)
    job = stack.client.post("/admin/repos/clone", json={"repo": name}).get_json()
    wait_until(lambda: (stack.status(job).get("progress") or {}).get("phase") == "Receiving objects", 30, "receiving")
    stack.worker.proc.send_signal(signal.SIGTERM)  # warm: would wait for the job
    assert stack.status(job)["status"] == "started"
    sent = time.monotonic()
    wait_until(lambda: time.monotonic() - sent >= 1.1, 5, "RQ's 1 s debounce of repeated signals")
    stack.worker.proc.send_signal(signal.SIGTERM)  # cold: stop the job now
    stack.worker.proc.wait(20)
    failed = stack.status(job)
    assert failed["status"] == "failed" and failed["error"] == STOPPED
    assert not Layout(stack.settings.data_dir).is_cached(parse_repo(name))


def test_recovery_beside_a_live_worker_fails_nothing(stack: Stack, origin: Origin) -> None:
    """A second worker starting up runs recovery while the first starts jobs. A job between dequeue and its
    work horse marking it `started` once looked abandoned (status and worker read at different moments)."""
    name = f"live{uuid.uuid4().hex[:6]}/repo"
    origin.create(name, files=20)
    stack.api.clone(name)
    queue = Queue(stack.settings.queue_name, connection=Redis.from_url(stack.settings.redis_url))
    with ThreadPoolExecutor(4) as pool:
        creations = [pool.submit(stack.api.worktree, name, f"s{i}") for i in range(24)]
        wrongly_failed: set[str] = set()
        while not all(c.done() for c in creations):
            wrongly_failed |= fail_abandoned_jobs(queue)
        results = [c.result() for c in creations]
    assert not wrongly_failed
    assert all(r["status"] == "finished" for r in results), [r["error"] for r in results]
