"""Writes to one repo are serialised by its Redis lock, also across several workers."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask.testing import FlaskClient
from redis import Redis

from domain.locks import repo_lock
from domain.names import parse_repo
from tests.conftest import Api, Origin, StackFactory, git, start_worker, wait_until
from tests.support.githttp import GitHttpServer


def test_jobs_wait_for_the_repo_lock(client: FlaskClient, api: Api, origin: Origin, repo_name: str, settings) -> None:
    bare = Path(api.clone(repo_name)["result"]["path"])
    before = git("rev-parse", "refs/remotes/origin/main", cwd=bare)
    origin.push_commit(repo_name)
    with repo_lock(Redis.from_url(settings.redis_url), parse_repo(repo_name), "test", ttl=30, wait=5):
        job = client.post("/admin/repos/clone", json={"repo": repo_name}).get_json()

        def waiting() -> bool:
            body = client.get(job["url"]).get_json()
            return body["status"] == "started" and body["progress"]["step"] == "waiting for the repo lock"

        wait_until(waiting, 10, "the fetch to wait for the lock")
        assert git("rev-parse", "refs/remotes/origin/main", cwd=bare) == before  # nothing written meanwhile
    assert api.wait(job)["result"]["action"] == "fetched"
    assert git("rev-parse", "refs/remotes/origin/main", cwd=bare) != before


def test_many_worktrees_at_once_with_two_workers(origin: Origin, stack_factory: StackFactory, tmp_path: Path) -> None:
    name = f"busy{uuid.uuid4().hex[:6]}/repo"
    origin.create(name, files=50)
    with GitHttpServer(origin.root) as server:
        stack = stack_factory(server.base_url)
        second = start_worker(stack.env, tmp_path / "second-worker.log")
        try:
            sessions = [f"s{i}" for i in range(24)]

            def create(session: str) -> dict:
                body = {"repo": name, "session_id": session}
                return stack.client.post("/admin/worktrees", json=body).get_json()

            with ThreadPoolExecutor(12) as pool:
                accepted = list(pool.map(create, sessions))
                refresh = [pool.submit(stack.client.post, "/admin/repos/clone", json={"repo": name}) for _ in range(4)]
            results = [stack.api.wait(job, timeout=120) for job in accepted]
            for future in refresh:
                assert stack.api.wait(future.result().get_json(), timeout=120)["status"] == "finished"
        finally:
            second.stop()
    assert all(r["status"] == "finished" for r in results), [r["error"] for r in results if r["error"]]
    assert len({r["result"]["path"] for r in results}) == len(sessions)
    bare = stack.settings.data_dir / "repos" / name.replace("/", "__")
    listed = git("worktree", "list", "--porcelain", cwd=bare)
    assert all(f"{name.replace('/', '__')}__{s}\n" in listed for s in sessions)
    assert git("fsck", "--no-progress", cwd=bare) == ""
