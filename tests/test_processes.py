"""Stray processes (orphans, and anything running in a worktree): listing and killing them, with real processes,
some detached and re-parented to PID 1. tests/test_stack.py has the stack's side: bin/procman ending a service's
processes with it, and bin/start ending what a killed stack left in its worktrees."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from flask.testing import FlaskClient

from domain.config import Settings
from sidecar import create_app
from tests.conftest import Api, WorkerProcess, wait_until


def spawn_orphan(script: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> psutil.Process:
    """Run `script` in a shell that exits at once, leaving its background job to PID 1. Returns that job."""
    shell = subprocess.run(
        ["bash", "-c", f"( {script} ) >/dev/null 2>&1 & echo $!"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = psutil.Process(int(shell.stdout))
    wait_until(lambda: orphan.ppid() == 1, 10, "the process to be re-parented to PID 1")
    return orphan


@pytest.fixture
def fast_kill(settings: Settings, worker: WorkerProcess) -> FlaskClient:
    return create_app(replace(settings, kill_grace=0.5)).test_client()


def test_orphan_is_listed_and_killed(fast_kill: FlaskClient, api: Api, repo_name: str) -> None:
    worktree = Path(api.worktree(repo_name, "orphans")["result"]["path"])
    orphan = spawn_orphan("exec sleep 300", cwd=worktree)
    try:
        listed = {p["pid"]: p for p in fast_kill.get("/admin/processes").get_json()["processes"]}
        assert orphan.pid in listed
        entry = listed[orphan.pid]
        assert entry["cmdline"] == "sleep 300" and entry["ppid"] == 1 and entry["reason"] == "orphan"
        assert entry["cwd"] == str(worktree) and entry["worktree"] == worktree.name
        assert entry["age_seconds"] >= 0 and entry["rss_bytes"] > 0 and entry["cpu_seconds"] >= 0

        killed = fast_kill.post(f"/admin/processes/{orphan.pid}/kill")
        assert killed.status_code == 200, killed.get_json()
        assert killed.get_json()["terminated"] == [orphan.pid] and killed.get_json()["survivors"] == []
        assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
        assert orphan.pid not in {p["pid"] for p in fast_kill.get("/admin/processes").get_json()["processes"]}
    finally:
        if orphan.is_running():
            orphan.kill()


def test_a_process_in_a_worktree_is_listed_and_killed_whoever_its_parent_is(
    fast_kill: FlaskClient, api: Api, repo_name: str
) -> None:
    """Not an orphan (its parent, this test, lives on), yet it runs in a worktree: an agent's command, say."""
    worktree = Path(api.worktree(repo_name, "running")["result"]["path"])
    (worktree / "sub").mkdir()
    child = subprocess.Popen(["sleep", "300"], cwd=worktree / "sub")
    outside = subprocess.Popen(["sleep", "301"])
    try:
        listed = {p["pid"]: p for p in fast_kill.get("/admin/processes").get_json()["processes"]}
        assert listed[child.pid]["reason"] == "in-worktree" and listed[child.pid]["ppid"] == os.getpid()
        assert listed[child.pid]["worktree"] == worktree.name
        assert outside.pid not in listed

        refused = fast_kill.post(f"/admin/processes/{outside.pid}/kill")
        assert refused.status_code == 403 and "part of the stack" in refused.get_json()["message"]
        killed = fast_kill.post(f"/admin/processes/{child.pid}/kill")
        assert killed.status_code == 200 and killed.get_json()["terminated"] == [child.pid], killed.get_json()
        assert child.wait(5) == -15
    finally:
        for proc in (child, outside):
            proc.kill()
            proc.wait()


def test_sigterm_ignored_gets_sigkill_and_children_go_too(fast_kill: FlaskClient) -> None:
    orphan = spawn_orphan("trap '' TERM; sleep 300 & sleep 301; wait")
    child = wait_until(lambda: orphan.children(), 10, "the orphan's children")[0]
    try:
        refused = fast_kill.post(f"/admin/processes/{child.pid}/kill")
        assert refused.status_code == 409 and "not an orphan" in refused.get_json()["message"]

        body = fast_kill.post(f"/admin/processes/{orphan.pid}/kill").get_json()
        assert orphan.pid in body["killed"] and body["survivors"] == []
        assert child.pid in body["terminated"] + body["killed"]
    finally:
        for proc in (orphan, child):
            if proc.is_running():
                proc.kill()


def test_the_stack_and_init_are_refused(fast_kill: FlaskClient, worker: WorkerProcess, redis_url: str) -> None:
    redis_pid = next(
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if redis_url.split(":")[-1].split("/")[0] in " ".join(p.info["cmdline"] or [])
        and "redis-server" in (p.info["name"] or "")
    )
    cases = {
        1: "PID 1",
        os.getpid(): "the sidecar",
        os.getppid(): "the sidecar or one of its parents",
        worker.proc.pid: "part of the stack",
        redis_pid: "part of the stack",
    }
    assert fast_kill.post("/admin/processes/%31/kill").status_code == 403  # "1", URL-encoded
    for pid, reason in cases.items():
        response = fast_kill.post(f"/admin/processes/{pid}/kill")
        assert response.status_code == 403, (pid, response.get_json())
        assert reason in response.get_json()["message"]
    assert worker.proc.poll() is None
    listed = {p["pid"] for p in fast_kill.get("/admin/processes").get_json()["processes"]}
    assert not listed & {1, os.getpid(), worker.proc.pid, redis_pid}


@pytest.mark.parametrize("pid", ["abc", "-1", "0", "1.5", "4194305", "9" * 30, "\uff11"])
def test_bad_pids(fast_kill: FlaskClient, pid: str) -> None:
    response = fast_kill.post(f"/admin/processes/{pid}/kill")
    assert response.status_code == 422 and "pid" in response.get_json()["errors"]["path"]


def test_unknown_pid_is_404(fast_kill: FlaskClient) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    response = fast_kill.post(f"/admin/processes/{proc.pid}/kill")
    assert response.status_code == 404 and str(proc.pid) in response.get_json()["message"]
