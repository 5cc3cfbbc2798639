"""A worker killed mid-job: the job ends failed at restart, nothing half-made counts, the next request works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from redis import Redis

from sidecar import create_app
from sidecar.config import Settings
from sidecar.layout import Layout
from sidecar.names import parse_repo
from tests.conftest import Api, Origin, WorkerProcess, git, start_worker, wait_until
from tests.support.githttp import GitHttpServer
from worker.recovery import ABANDONED


@dataclass
class Stack:
    """A worker and API of their own, cloning from a throttled git HTTP server."""

    server: GitHttpServer
    env: dict[str, str]
    settings: Settings
    client: FlaskClient
    api: Api
    worker: WorkerProcess
    log: Path

    def restart_worker(self) -> None:
        self.worker = start_worker(self.env, self.log)

    def status(self, job: dict) -> dict:
        return self.client.get(job["url"]).get_json()


@pytest.fixture
def stack(stack_env: dict[str, str], settings: Settings, origin: Origin, tmp_path: Path) -> Iterator[Stack]:
    with GitHttpServer(origin.root, delay=0.02) as server:
        env = {**stack_env, "MECODES_QUEUE": f"kill-{uuid.uuid4().hex[:8]}", "MECODES_GIT_BASE_URL": server.base_url}
        own = replace(settings, queue_name=env["MECODES_QUEUE"], git_base_url=server.base_url)
        client = create_app(own).test_client()
        log = tmp_path / "worker.log"
        s = Stack(server, env, own, client, Api(client), start_worker(env, log), log)
        yield s
        s.worker.stop()


def _staging(layout: Layout, prefix: str) -> list[Path]:
    return [p for p in layout.tmp_dir.iterdir() if p.name.startswith(prefix)]


def test_killed_mid_clone(stack: Stack, origin: Origin) -> None:
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
    assert Redis.from_url(stack.settings.redis_url).get(f"mecodes:lock:repo:{repo.slug}") is None
    assert name not in [r["repo"] for r in stack.client.get("/admin/repos").get_json()["repos"]]

    stack.server.delay = 0
    retried = stack.api.clone(name)
    assert retried["id"] != job["id"] and retried["status"] == "finished", retried
    git("fsck", "--no-progress", cwd=layout.repo_path(repo))


def test_killed_mid_worktree(stack: Stack, origin: Origin, tmp_path: Path) -> None:
    name = f"kill{uuid.uuid4().hex[:6]}/wt"
    origin.create(name)
    stack.server.delay = 0
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
