"""Faults: Redis restarted mid-job, a nearly full disk, two hundred worktree requests for one repo at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Origin, StackFactory, free_port, git, start_redis, wait_until
from tests.support.githttp import GitHttpServer


def test_redis_restarted_mid_job(origin: Origin, stack_factory: StackFactory, tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path)
    kept, big = f"rr{uuid.uuid4().hex[:6]}/kept", f"rr{uuid.uuid4().hex[:6]}/big"
    origin.create(kept)
    origin.create(big, big_bytes=4_000_000)
    try:
        with GitHttpServer(origin.root) as server:
            stack = stack_factory(server.base_url, REDIS_URL=f"redis://127.0.0.1:{port}/0")
            worktree = Path(stack.api.worktree(kept, "keep")["result"]["path"])
            server.delay = 0.02
            job = stack.client.post("/admin/repos/clone", json={"repo": big}).get_json()
            wait_until(lambda: (stack.status(job).get("progress") or {}).get("phase") == "Receiving objects", 30, "rx")

            redis.terminate()
            redis.wait(10)
            for response in (stack.client.get(job["url"]), stack.client.post("/admin/repos/clone", json={"repo": big})):
                assert response.status_code == 503 and "redis" in response.get_json()["message"]
            health = stack.client.get("/admin/health")
            assert health.status_code == 503 and health.get_json()["problems"][0].startswith("redis:")
            # What is on disk is still there, and still listed: the filesystem is the source of truth.
            assert kept in [r["repo"] for r in stack.client.get("/admin/repos").get_json()["repos"]]
            assert "keep" in [w["session_id"] for w in stack.client.get("/admin/worktrees").get_json()["worktrees"]]

            redis = start_redis(port, tmp_path)  # empty: Redis keeps nothing across a restart
            lost = stack.client.get(job["url"])
            assert lost.status_code == 404 and job["id"] in lost.get_json()["message"]
            wait_until(lambda: stack.client.get("/admin/health").status_code == 200, 60, "the worker to re-register")
            server.delay = 0
            assert stack.api.clone(big)["status"] == "finished"
            assert stack.api.worktree(kept, "second")["status"] == "finished"
    finally:
        redis.terminate()
        redis.wait(10)
    assert (worktree / "file0.txt").exists()
    git("fsck", "--no-progress", cwd=stack.settings.data_dir / "repos" / big.replace("/", "__"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 3 MB filesystem for the data root (a real tmpfs: needs root, as CI and the sessions here have)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_nearly_full(origin: Origin, stack_factory: StackFactory, small_disk: Path) -> None:
    small, big = f"df{uuid.uuid4().hex[:6]}/small", f"df{uuid.uuid4().hex[:6]}/big"
    origin.create(small)
    origin.create(big, big_bytes=6_000_000)
    stack = stack_factory(origin.base_url, MECODES_DATA_DIR=str(small_disk / "projects"))
    assert stack.api.clone(small)["status"] == "finished"

    failed = stack.api.clone(big)
    assert failed["status"] == "failed"
    assert "No space left on device" in failed["error"] or "unable to write" in failed["error"], failed["error"]
    repos = [r["repo"] for r in stack.client.get("/admin/repos").get_json()["repos"]]
    assert repos == [small], "the half-made clone does not count as cached"
    assert not (small_disk / "projects" / "repos" / big.replace("/", "__")).exists()
    assert list((small_disk / "projects" / "tmp").iterdir()) == [], "its staging folder went too"
    git("fsck", "--no-progress", cwd=small_disk / "projects" / "repos" / small.replace("/", "__"))
    assert stack.api.worktree(small, "still-works")["status"] == "finished"


def test_two_hundred_worktree_requests_for_one_repo(origin: Origin, stack_factory: StackFactory) -> None:
    repo = f"many{uuid.uuid4().hex[:6]}/repo"
    origin.create(repo, files=20)
    stack = stack_factory(origin.base_url)
    sessions = [f"s{i:03d}" for i in range(200)]
    with ThreadPoolExecutor(32) as pool:
        accepted = list(
            pool.map(lambda s: stack.client.post("/admin/worktrees", json={"repo": repo, "session_id": s}), sessions)
        )
    assert {r.status_code for r in accepted} == {202}
    results = [stack.api.wait(r.get_json(), timeout=300) for r in accepted]
    assert all(r["status"] == "finished" for r in results), {r["error"] for r in results if r["error"]}
    bare = stack.settings.data_dir / "repos" / repo.replace("/", "__")
    listed = [
        line for line in git("worktree", "list", "--porcelain", cwd=bare).splitlines() if line.startswith("worktree ")
    ]
    assert len(listed) == 201  # the bare repo itself, and one per session
    on_disk = sorted(p.name for p in (stack.settings.data_dir / "worktrees").iterdir())
    assert on_disk == sorted(f"{repo.replace('/', '__')}__{s}" for s in sessions)
    assert shutil.disk_usage(stack.settings.data_dir).free > 0 and os.listdir(stack.settings.data_dir / "tmp") == []
