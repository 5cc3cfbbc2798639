"""Jobs outlive a restart of the whole stack (bin/start; Redis keeps an append-only file in MECODES_REDIS_DIR): a
job running when the stack stopped, or crashed, reads `failed` with the reason, and a job queued behind it runs."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from redis import Redis
from rq import Worker

from tests.conftest import ROOT, Origin, WorkerProcess, free_port, start_redis, wait_until
from tests.support.githttp import GitHttpServer
from tests.test_stack import RunningStack, running_stack, start_stack, stop


def receiving(stack: RunningStack, job: dict[str, Any]) -> bool:
    progress = stack.request("GET", job["url"])[1].get("progress") or {}
    return progress.get("phase") == "Receiving objects" and 0 < (progress.get("percent") or 0) < 100


def gc_run_ids(stack: RunningStack) -> set[str]:
    return {j["id"] for j in stack.request("GET", "/admin/jobs?limit=500")[1]["jobs"] if j["kind"] == "gc"}


def crash(stack: RunningStack) -> None:
    """Every process of the stack SIGKILLed at once, as a machine losing power (Redis included)."""
    everything = [psutil.Process(stack.proc.pid), *psutil.Process(stack.proc.pid).children(recursive=True)]
    for process in everything:
        process.kill()
    psutil.wait_procs(everything, timeout=10)


@pytest.mark.parametrize("how", ["sigterm", "crash"])
def test_a_running_clone_fails_across_a_restart_and_the_chat_queued_behind_it_runs(
    tmp_path: Path, origin: Origin, how: str
) -> None:
    repo = f"persist{uuid.uuid4().hex[:6]}/big"
    origin.create(repo, big_bytes=8_000_000)  # about 25 s through the slowed server: longer than the stop grace
    with GitHttpServer(origin.root, delay=0.05) as server:
        stack = start_stack(tmp_path, origin, git_base_url=server.base_url)
        try:
            clone = stack.request("POST", "/admin/repos/clone", {"repo": repo})[1]
            wait_until(lambda: receiving(stack, clone), 60, "the clone to be receiving objects")
            status, chat = stack.request("POST", "/admin/chats", {"repo": repo, "title": "queued behind the clone"})
            assert status == 202 and chat["status"] == "queued", chat
            gc_runs = gc_run_ids(stack)  # the GC run at the worker's start
        finally:
            crash(stack) if how == "crash" else stop(stack)
        assert (tmp_path / "redis" / "appendonlydir").is_dir()  # MECODES_REDIS_DIR's default: beside the data

        server.delay = 0
        with running_stack(tmp_path, origin, git_base_url=server.base_url) as again:
            failed = again.request("GET", clone["url"])[1]
            assert failed["status"] == "failed" and failed["error"].startswith("interrupted by shutdown"), failed
            done = again.wait_job(chat)
            assert done["status"] == "finished", done
            assert done["result"]["repo_action"] == "cloned"  # the interrupted clone left nothing that counts
            status, repos = again.request("GET", "/admin/repos")
            assert [r["repo"] for r in repos["repos"]] == [repo]
            assert list((tmp_path / "projects" / "tmp").iterdir()) == []  # its staging folder was removed
            if how == "sigterm":  # the GC scheduler handed its lease back, so GC runs at this start too
                wait_until(lambda: gc_run_ids(again) - gc_runs, 30, "a GC run at the new start")


def test_the_worker_waits_for_redis_to_answer(stack_env: dict[str, str], tmp_path: Path) -> None:
    """Redis answers only once it has read its append-only file: a worker started beside it waits (it used to die,
    and each death counted towards MECODES_RESTART_LIMIT)."""
    port = free_port()
    env = {**stack_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "MECODES_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
    worker, redis_server = WorkerProcess(proc, log), None
    try:
        wait_until(lambda: "waiting for Redis" in log.read_text(), 20, "the worker to wait for Redis")
        assert proc.poll() is None, log.read_text()
        redis_server = start_redis(port, tmp_path)
        redis = Redis.from_url(env["REDIS_URL"])
        wait_until(lambda: proc.pid in [w.pid for w in Worker.all(connection=redis)], 20, "the worker to register")
    finally:
        worker.stop()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)
