"""GC never loses work: worktrees in random states, dry run vs real run, repos, staging leftovers, races."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from redis import Redis
from rq.cron import CronScheduler

from domain.config import Settings
from tests.conftest import Origin, Stack, StackFactory, free_port, git, start_redis, start_worker, wait_until
from worker.cron import periodic_jobs

DAYS = 86400
IDLE = 10 * DAYS  # older than the default 7-day limit


def age(path: Path, seconds: float) -> None:
    """Make a worktree (or any folder) look untouched for `seconds`: what GC reads is mtimes."""
    then = time.time() - seconds
    targets = [path, *path.rglob("*")] if path.exists() else []
    gitfile = path / ".git"
    if gitfile.is_file():
        admin = Path(gitfile.read_text().strip().removeprefix("gitdir: "))
        targets += [admin / "index", admin / "HEAD", admin / "logs" / "HEAD"]
    for target in targets:
        if target.exists() and not target.is_symlink():
            os.utime(target, (then, then))


def commit(path: Path, name: str) -> None:
    (path / name).write_text(name)
    git("add", name, cwd=path)
    git("commit", "-q", "-m", name, cwd=path)


# Each state: how to set the worktree up, and whether GC may remove it.
def _clean_idle(path: Path) -> None:
    age(path, IDLE)


def _clean_fresh(path: Path) -> None:
    pass


def _dirty_idle(path: Path) -> None:
    (path / "file0.txt").write_text("edited, not committed")
    age(path, IDLE)


def _untracked_idle(path: Path) -> None:
    (path / "notes.md").write_text("new file")
    age(path, IDLE)


def _unpushed_idle(path: Path) -> None:
    commit(path, f"work-{uuid.uuid4().hex[:6]}.txt")
    age(path, IDLE)


def _pushed_idle(path: Path) -> None:
    commit(path, f"pushed-{uuid.uuid4().hex[:6]}.txt")
    git("push", "-q", "origin", "HEAD", cwd=path)
    git("fetch", "-q", "origin", cwd=path)
    age(path, IDLE)


def _ignored_only_idle(path: Path) -> None:
    (path / ".gitignore").write_text("build/\n")
    git("add", ".gitignore", cwd=path)
    git("commit", "-q", "-m", "ignore build", cwd=path)
    git("push", "-q", "origin", "HEAD", cwd=path)
    git("fetch", "-q", "origin", cwd=path)
    (path / "build").mkdir()
    (path / "build" / "out.o").write_text("reproducible")
    age(path, IDLE)


def _locked_idle(path: Path) -> None:
    git("worktree", "lock", "--reason", "keep me", str(path), cwd=path)
    age(path, IDLE)


def _folder_deleted(path: Path) -> None:
    shutil.rmtree(path)


STATES: dict[str, tuple[Callable[[Path], None], bool]] = {
    "clean_idle": (_clean_idle, True),
    "clean_fresh": (_clean_fresh, False),
    "dirty_idle": (_dirty_idle, False),
    "untracked_idle": (_untracked_idle, False),
    "unpushed_idle": (_unpushed_idle, False),
    "pushed_idle": (_pushed_idle, True),
    "ignored_only_idle": (_ignored_only_idle, True),
    "locked_idle": (_locked_idle, False),
    "folder_deleted": (_folder_deleted, True),
}


@pytest.fixture
def stack(origin: Origin, stack_factory: StackFactory) -> Stack:
    return stack_factory(origin.base_url)


def run_gc(stack: Stack, **body: object) -> dict:
    accepted = stack.client.post("/admin/gc", json=body)
    assert accepted.status_code == 202, accepted.get_json()
    done = stack.api.wait(accepted.get_json(), timeout=120)
    assert done["status"] == "finished", done
    return done["result"]


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.lstat().st_mtime for p in root.rglob("*") if ".git" not in p.parts}


@pytest.mark.parametrize("seed", [1, 2])
def test_gc_never_removes_work_and_removes_every_removable(stack: Stack, origin: Origin, seed: int) -> None:
    rng = random.Random(seed)
    repos = [f"gc{seed}{uuid.uuid4().hex[:4]}/r{i}" for i in range(2)]
    for repo in repos:
        origin.create(repo)
    plan = {f"s{i}": (rng.choice(repos), rng.choice(sorted(STATES))) for i in range(24)}
    with ThreadPoolExecutor(8) as pool:
        created = dict(zip(plan, pool.map(lambda s: stack.api.worktree(plan[s][0], s), plan), strict=True))
    paths = {s: Path(job["result"]["path"]) for s, job in created.items()}
    for session, (_, state) in plan.items():
        STATES[state][0](paths[session])
    # Folders git does not know (a repo pruned them) and a half-made clone in tmp/.
    data = stack.settings.data_dir
    stray_old = data / "worktrees" / f"{repos[0].replace('/', '__')}__strayold"
    stray_old.mkdir()
    (stray_old / "leftover.txt").write_text("x")
    age(stray_old, IDLE)
    stray_new = data / "worktrees" / f"{repos[1].replace('/', '__')}__straynew"
    stray_new.mkdir()
    (stray_new / "fresh.txt").write_text("x")
    leftover = data / "tmp" / f"clone-{repos[0].replace('/', '__')}-abcd1234"
    (leftover / "repo.git").mkdir(parents=True)

    before = snapshot(data / "worktrees")
    dry = run_gc(stack, dry_run=True)
    assert snapshot(data / "worktrees") == before, "a dry run changes nothing"
    assert leftover.exists()
    real = run_gc(stack, dry_run=False)

    for result in (dry, real):
        decisions = {d["name"].split(":")[-1]: d for d in result["decisions"] if d["kind"] in {"worktree", "folder"}}
        for session, (_, state) in plan.items():
            removable = STATES[state][1]
            action = decisions[session]["action"]
            assert (action != "kept") == removable, (state, decisions[session])
            if result["dry_run"]:
                assert action.startswith("would be") or action == "kept"
        assert decisions[stray_old.name]["action"] != "kept"
        assert decisions[stray_new.name]["action"] == "kept"
        assert any(d["kind"] == "staging" and d["name"] == leftover.name for d in result["decisions"])
    assert real["bytes_freed"] > 0 and real["bytes_freed"] == dry["bytes_freed"]

    for session, (_, state) in plan.items():
        removable = STATES[state][1]
        assert paths[session].exists() != removable, (session, state)
    for session, (_, state) in plan.items():
        if state == "dirty_idle":
            assert (paths[session] / "file0.txt").read_text() == "edited, not committed"
    assert not stray_old.exists() and stray_new.exists() and not leftover.exists()
    listed = {w["session_id"] for w in stack.client.get("/admin/worktrees").get_json()["worktrees"]}
    assert listed == {s for s, (_, state) in plan.items() if not STATES[state][1]}


def test_a_running_process_keeps_its_worktree(stack: Stack, origin: Origin) -> None:
    repo = f"gcp{uuid.uuid4().hex[:4]}/busy"
    origin.create(repo)
    path = Path(stack.api.worktree(repo, "busy")["result"]["path"])
    age(path, IDLE)
    proc = subprocess.Popen(["sleep", "60"], cwd=path)
    try:
        result = run_gc(stack, dry_run=False)
    finally:
        proc.kill()
        proc.wait()
    decision = next(d for d in result["decisions"] if d["name"] == f"{repo}:busy")
    assert decision["action"] == "kept" and f"in use by process {proc.pid}" == decision["reason"]
    assert path.exists()


def test_repos_without_worktrees(stack: Stack, origin: Origin) -> None:
    unused, unpushed, fresh = (f"gcr{uuid.uuid4().hex[:4]}/{n}" for n in ("unused", "unpushed", "fresh"))
    for repo in (unused, unpushed, fresh):
        origin.create(repo)
        stack.api.clone(repo)
    # A session branch with commits on no remote, whose worktree was deleted (branches are kept).
    path = Path(stack.api.worktree(unpushed, "gone")["result"]["path"])
    commit(path, "only-here.txt")
    stack.api.wait(stack.client.delete(f"/admin/worktrees/{unpushed}/gone?force=true").get_json())
    data = stack.settings.data_dir / "repos"
    for repo in (unused, unpushed):
        bare = data / repo.replace("/", "__")
        for marker in (bare, bare / "worktrees", bare / "mecodes-last-fetch"):
            if marker.exists():
                os.utime(marker, (time.time() - 40 * DAYS,) * 2)

    result = run_gc(stack, dry_run=False)
    repos = {d["name"]: d for d in result["decisions"] if d["kind"] == "repo"}
    assert repos[unused]["action"] == "removed"
    assert repos[unpushed]["action"] == "kept" and "mecodes/gone" in repos[unpushed]["reason"]
    assert repos[fresh]["action"] == "kept" and "ago" in repos[fresh]["reason"]
    assert not (data / unused.replace("/", "__")).exists()
    assert (data / unpushed.replace("/", "__")).exists()


def test_gc_racing_worktree_creation(origin: Origin, stack_factory: StackFactory, tmp_path: Path) -> None:
    """GC with a zero idle limit (everything clean is collectable) never touches a worktree being made."""
    stack = stack_factory(origin.base_url)
    second = start_worker(stack.env, tmp_path / "second.log")
    repo = f"gcrace{uuid.uuid4().hex[:4]}/repo"
    origin.create(repo, files=200)
    stack.api.clone(repo)
    try:
        with ThreadPoolExecutor(8) as pool:
            creations = [pool.submit(stack.api.worktree, repo, f"r{i}") for i in range(16)]
            gcs = [pool.submit(run_gc, stack, dry_run=True, max_idle_days=0) for _ in range(6)]
            results = [c.result() for c in creations]
            for g in gcs:
                g.result()
    finally:
        second.stop()
    assert all(r["status"] == "finished" for r in results), [r["error"] for r in results]
    for r in results:
        assert (Path(r["result"]["path"]) / "file0.txt").exists()
    bare = stack.settings.data_dir / "repos" / repo.replace("/", "__")
    listed = git("worktree", "list", "--porcelain", cwd=bare)
    assert all(f"__r{i}\n" in listed for i in range(16))
    assert list((stack.settings.data_dir / "tmp").iterdir()) == []

    # Now a real GC with a zero limit removes all of them, cleanly.
    real = run_gc(stack, dry_run=False, max_idle_days=0)
    assert sum(d["action"] == "removed" for d in real["decisions"] if d["kind"] == "worktree") == 16
    assert "worktree" not in git("worktree", "list", "--porcelain", cwd=bare).replace(f"worktree {bare}\n", "")


def test_gc_status_and_bad_requests(stack: Stack) -> None:
    assert stack.client.post("/admin/gc", json={}).get_json()["errors"]["json"]["dry_run"]
    for bad in ({"dry_run": "yes please"}, {"dry_run": True, "max_idle_days": -1}, {"dry_run": True, "x": 1}):
        assert stack.client.post("/admin/gc", json=bad).status_code == 422
    status = stack.client.get("/admin/gc").get_json()
    assert status["schedule"] == {"interval_seconds": 0, "scheduler": None, "next_run": None}
    result = run_gc(stack, dry_run=True)
    last = stack.client.get("/admin/gc").get_json()["last_run"]
    assert last["job_id"] == result["job_id"] and last["dry_run"] is True and "counts" in last


def test_periodic_gc_with_one_scheduler(origin: Origin, stack_factory: StackFactory, tmp_path: Path) -> None:
    stack = stack_factory(origin.base_url, MECODES_GC_INTERVAL="1")
    second = start_worker(stack.env, tmp_path / "second.log")  # its scheduler must wait, not run
    try:
        first = wait_until(lambda: stack.client.get("/admin/gc").get_json()["last_run"], 20, "a periodic GC")
        later = wait_until(
            lambda: (s := stack.client.get("/admin/gc").get_json())["last_run"]["job_id"] != first["job_id"] and s,
            20,
            "a second periodic GC",
        )
    finally:
        second.stop()
    assert later["schedule"]["interval_seconds"] == 1
    assert later["schedule"]["scheduler"] and later["schedule"]["next_run"]
    assert later["last_run"]["dry_run"] is False
    schedulers = [
        s.name
        for s in CronScheduler.all(Redis.from_url(stack.settings.redis_url))
        if any(j.name == f"mecodes-gc:{stack.settings.queue_name}" for j in s.get_jobs())
    ]
    assert schedulers == [later["schedule"]["scheduler"]]


def _scheduler_process(stack: Stack) -> psutil.Process:
    """The GC scheduler: the worker's first child (work horses come and go after it)."""
    worker = psutil.Process(stack.worker.proc.pid)
    wait_until(worker.children, 20, "the GC scheduler process")
    return min(worker.children(), key=lambda child: child.create_time())


def _exited(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_gc_schedule_rides_out_a_redis_restart(origin: Origin, stack_factory: StackFactory, tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path)
    try:
        stack = stack_factory(origin.base_url, REDIS_URL=f"redis://127.0.0.1:{port}/0", MECODES_GC_INTERVAL="1")
        wait_until(lambda: stack.client.get("/admin/gc").get_json()["last_run"], 20, "a periodic GC")
        scheduler = _scheduler_process(stack)
        redis.terminate()
        redis.wait(10)
        redis = start_redis(port, tmp_path)  # empty: the schedule's state in Redis is gone with it
        status = wait_until(
            lambda: (s := stack.client.get("/admin/gc").get_json())["last_run"] and s["schedule"]["scheduler"] and s,
            30,
            "a periodic GC after the restart",
        )
        assert status["last_run"]["dry_run"] is False
        assert scheduler.is_running() and scheduler.pid == _scheduler_process(stack).pid  # the same one rode it out
    finally:
        redis.terminate()
        redis.wait(10)


def test_the_gc_scheduler_stops_when_asked_while_redis_is_down(
    origin: Origin, stack_factory: StackFactory, tmp_path: Path
) -> None:
    """What happens when Redis dies in production: the process manager stops everything. The scheduler, asleep
    until its next run, gets SIGTERM; RQ's clean-up then fails on the dead Redis, which once looked like an
    outage to retry through, forever."""
    port = free_port()
    redis = start_redis(port, tmp_path)
    stack = stack_factory(origin.base_url, REDIS_URL=f"redis://127.0.0.1:{port}/0", MECODES_GC_INTERVAL="3600")
    wait_until(lambda: stack.client.get("/admin/gc").get_json()["schedule"]["scheduler"], 20, "the GC scheduler")
    scheduler = _scheduler_process(stack)
    redis.terminate()
    redis.wait(10)
    scheduler.terminate()  # one SIGTERM, as the kernel sends it when the worker exits
    wait_until(lambda: _exited(scheduler), 10, "the scheduler to stop (not to take the request for an outage)")


def test_periodic_jobs_are_switched_by_their_intervals(settings: Settings) -> None:
    on = replace(
        settings, gc_interval=60, agent_release_interval=30, work_state_max_age=90, opencode_url="http://127.0.0.1:1"
    )
    assert [(j.kind, j.interval, j.result_ttl) for j in periodic_jobs(on)] == [
        ("gc", 60, settings.job_result_ttl),
        ("release", 30, 60),  # runs every few minutes: only the last ones stay in the jobs list
        ("work_states", 90, 180),
    ]
    assert [j.kind for j in periodic_jobs(replace(on, gc_interval=0))] == ["release", "work_states"]
    assert [j.kind for j in periodic_jobs(replace(on, opencode_url=""))] == ["gc", "work_states"]  # nothing to release
    assert periodic_jobs(replace(on, gc_interval=0, agent_release_interval=0, work_state_max_age=0)) == []
