"""Benchmark of garbage collection: GC (dry run and real) over many worktrees in mixed states through the API,
against the raw cost of the same per-worktree git checks, and the latency of listing orphaned processes.

Starts its own redis-server, RQ worker and gunicorn sidecar on 127.0.0.1 (free ports), all inside a temporary
folder that is removed at the end. Run from the repo root: `.venv/bin/python bench/bench_gc.py [--worktrees N]`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from stack import (
    Api,
    add_origin_options,
    bench_folder,
    git,
    in_job_seconds,
    latency_text,
    make_origin,
    median_ms,
    print_table_header,
    print_table_row,
    running_stack,
)

REPO = "bench/gc"
IDLE = 10 * 86400.0  # older than the default 7-day limit
COMMIT = ("-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q")
# The two queries GC runs in every worktree (domain.inventory.work_state).
CHECKS = (
    ("--no-optional-locks", "status", "--porcelain", "--untracked-files=normal"),
    ("rev-list", "--count", "HEAD", "--not", "--remotes"),
)


# ---- worktree states


def age(path: Path) -> None:
    """Make a worktree look untouched for IDLE, as GC reads it (mtimes), with an index that agrees with the files
    (as after real idleness, so that `git status` need not re-read them) and is newer than them (not racy)."""
    then = time.time() - IDLE
    for target in (path, *path.rglob("*")):
        os.utime(target, (then, then), follow_symlinks=False)
    git("update-index", "-q", "--refresh", cwd=path)
    admin = Path((path / ".git").read_text().strip().removeprefix("gitdir: "))
    for target in (admin / "index", admin / "HEAD", admin / "logs" / "HEAD"):
        os.utime(target, (then + 1, then + 1))


def clean_idle(path: Path, tracked: str) -> None:
    age(path)


def dirty_idle(path: Path, tracked: str) -> None:
    (path / tracked).write_text("edited, not committed\n")
    age(path)


def untracked_idle(path: Path, tracked: str) -> None:
    (path / "notes.md").write_text("new file\n")
    age(path)


def unpushed_idle(path: Path, tracked: str) -> None:
    (path / "work.txt").write_text("committed, never pushed\n")
    git("add", "work.txt", cwd=path)
    git(*COMMIT, "-m", "work", cwd=path)
    age(path)


def clean_fresh(path: Path, tracked: str) -> None:
    """Just created: nothing to do."""


# Half the worktrees are removable (clean and idle); the others hold work or are recent.
CYCLE: list[Callable[[Path, str], None]] = [clean_idle] * 4 + [dirty_idle, untracked_idle, unpushed_idle, clean_fresh]


# ---- measurements


def create_worktrees(api: Api, count: int) -> dict[str, Path]:
    """Submit every worktree job at once (the first one clones), then wait for each. Session id -> path."""
    jobs = {
        f"s{i:04d}": api.submit("POST", "/admin/worktrees", {"repo": REPO, "session_id": f"s{i:04d}"})
        for i in range(count)
    }
    return {session: Path(api.wait(job)["result"]["path"]) for session, job in jobs.items()}


def run_gc(api: Api, dry_run: bool) -> tuple[float, dict[str, Any]]:
    """API wall time of one GC, and its finished job."""
    start = time.perf_counter()
    job = api.wait(api.submit("POST", "/admin/gc", {"dry_run": dry_run}))
    return time.perf_counter() - start, job


def raw_checks(paths: list[Path]) -> float:
    """Seconds to run GC's two git queries in every worktree, one after the other."""
    start = time.perf_counter()
    for path in paths:
        for args in CHECKS:
            git(*args, cwd=path)
    return time.perf_counter() - start


def removed_sessions(job: dict[str, Any]) -> set[str]:
    """Sessions whose worktree the GC job removed (or would remove)."""
    decisions = job["result"]["decisions"]
    return {d["name"].rpartition(":")[2] for d in decisions if d["kind"] == "worktree" and d["action"] != "kept"}


def outcome(job: dict[str, Any]) -> str:
    """What a GC job did to worktrees, and the bytes it freed (or would)."""
    result = job["result"]
    actions = Counter(d["action"] for d in result["decisions"] if d["kind"] == "worktree")
    done = ", ".join(f"{n} {action}" for action, n in sorted(actions.items()))
    freed = "to free" if result["dry_run"] else "freed"
    return f"{done}; {result['bytes_freed'] / 2**20:.1f} MB {freed}"


# ---- main


def run(args: argparse.Namespace, tmp: Path) -> None:
    origin_root = tmp / "origin"
    origin_root.mkdir()
    make_origin(origin_root, REPO, args.files, args.commits)

    with running_stack(tmp, f"file://{origin_root}/") as stack:
        api = stack.api
        start = time.perf_counter()
        paths = create_worktrees(api, args.worktrees)
        setup_seconds = time.perf_counter() - start
        tracked = git("ls-files", cwd=next(iter(paths.values()))).split("\n", 1)[0]
        states = {session: CYCLE[i % len(CYCLE)] for i, session in enumerate(paths)}
        for session, state in states.items():
            state(paths[session], tracked)
        removable = {session for session, state in states.items() if state is clean_idle}

        dry_api, dry_runs, raw = [], [], []
        for _ in range(args.reps):  # interleaved, so that both see the same page cache
            seconds, job = run_gc(api, dry_run=True)
            dry_api.append(seconds)
            dry_runs.append(job)
            raw.append(raw_checks(list(paths.values())))
        processes = api.latency("/admin/processes", args.calls)
        process_count = len(psutil.pids())
        real_seconds, real = run_gc(api, dry_run=False)

    for job in (*dry_runs, real):
        if removed_sessions(job) != removable:
            raise RuntimeError(f"GC chose wrongly: {sorted(removed_sessions(job) ^ removable)[:10]} …")
    if gone := {session for session, path in paths.items() if not path.exists()} - removable:
        raise RuntimeError(f"GC removed worktrees holding work: {sorted(gone)[:10]} …")

    mix = ", ".join(f"{n} {name}" for name, n in Counter(s.__name__ for s in states.values()).items())
    print(
        f"\nmecodes GC benchmark: {args.worktrees} worktrees of a {args.files}-file repo; medians of {args.reps} reps"
    )
    print(f"{'worktrees':<28}{mix}")
    print(f"{'setup':<28}{len(paths)} worktrees through the API in {setup_seconds:.1f} s")
    print_table_header()
    print_table_row(
        "gc dry run", median_ms(dry_api), median_ms([in_job_seconds(job) for job in dry_runs]), median_ms(raw)
    )
    print_table_row("gc (one run)", real_seconds * 1000, in_job_seconds(real) * 1000, None)
    print(f"{'GET /admin/processes':<28}{latency_text(processes)}; {process_count} processes on the machine")
    print(f"{'gc dry run':<28}{outcome(dry_runs[-1])}")
    print(f"{'gc':<28}{outcome(real)}")
    print("raw git: `status --porcelain` and `rev-list --count HEAD --not --remotes` in each worktree, in turn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_origin_options(parser, files=300)
    parser.add_argument("--worktrees", type=int, default=200, help="worktrees to create (default 200)")
    parser.add_argument("--reps", type=int, default=3, help="dry runs and raw loops, median shown (default 3)")
    parser.add_argument("--calls", type=int, default=200, help="GET /admin/processes calls (default 200)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(args, tmp)


if __name__ == "__main__":
    main()
