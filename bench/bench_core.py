"""Benchmark of the mecodes core: clone and worktree through the API versus raw git, job-poll latency, memory.

Starts its own redis-server, RQ worker and gunicorn sidecar on 127.0.0.1 (free ports), all inside a temporary
folder that is removed at the end. Run from the repo root: `.venv/bin/python bench/bench_core.py [--files N]`.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

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

REPO = "bench/big"


@dataclass
class Timing:
    api: list[float]
    in_job: list[float]
    raw: list[float]


def bench_clone(api: Api, origin_url: str, scratch: Path, reps: int) -> Timing:
    """Cold clone through the API (cache emptied first) versus `git clone --bare`."""
    timing = Timing([], [], [])
    for i in range(reps):
        status, job = api.request("DELETE", f"/admin/repos/{REPO}?force=true")
        if status == 202:
            api.wait(job)
        elif status != 404:  # 404: not cached yet
            raise RuntimeError(f"DELETE repo: HTTP {status}: {job}")
        start = time.perf_counter()
        job = api.wait(api.submit("POST", "/admin/repos/clone", {"repo": REPO}))
        timing.api.append(time.perf_counter() - start)
        timing.in_job.append(in_job_seconds(job))
        if job["result"]["action"] != "cloned":
            raise RuntimeError(f"expected a cold clone, the job did: {job['result']['action']}")

        dest = scratch / f"clone{i}.git"
        start = time.perf_counter()
        git("clone", "--bare", origin_url, str(dest))
        timing.raw.append(time.perf_counter() - start)
        shutil.rmtree(dest)
    return timing


def bench_worktree(api: Api, origin_url: str, scratch: Path, reps: int) -> tuple[Timing, str]:
    """Worktree of the cached repo through the API versus `git worktree add` on a separate bare clone.
    Returns the timings and the URL of the last (finished) job."""
    timing = Timing([], [], [])
    raw_bare = scratch / "raw.git"
    git("clone", "-q", "--bare", origin_url, str(raw_bare))
    for i in range(reps):
        start = time.perf_counter()
        job = api.wait(api.submit("POST", "/admin/worktrees", {"repo": REPO, "session_id": f"b{i}"}))
        timing.api.append(time.perf_counter() - start)
        timing.in_job.append(in_job_seconds(job))
        if job["result"]["repo_action"] != "up to date":
            raise RuntimeError(f"expected no fetch, the job did: {job['result']['repo_action']}")

        start = time.perf_counter()
        git("-C", str(raw_bare), "worktree", "add", "-b", f"x{i}", str(scratch / f"x{i}"), "main")
        timing.raw.append(time.perf_counter() - start)
    return timing, job["url"]


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def run(args: argparse.Namespace, tmp: Path) -> None:
    origin_root, scratch = tmp / "origin", tmp / "scratch"
    origin_root.mkdir()
    scratch.mkdir()
    origin = make_origin(origin_root, REPO, args.files, args.commits)
    origin_url = f"file://{origin}"
    pack_mb = sum(p.stat().st_size for p in (origin / "objects" / "pack").iterdir()) / 2**20

    with running_stack(tmp, f"file://{origin_root}/") as stack:
        clone = bench_clone(stack.api, origin_url, scratch, args.reps)
        worktree, job_url = bench_worktree(stack.api, origin_url, scratch, args.reps)
        polls = stack.api.latency(job_url, args.polls)
        redis_proc, worker_proc, gunicorn = (
            psutil.Process(s.proc.pid) for s in (stack.redis, stack.worker, stack.gunicorn)
        )
        gunicorn_rss = [(p is gunicorn, rss_mb(p)) for p in (gunicorn, *gunicorn.children(recursive=True))]
        worker_rss, redis_rss = rss_mb(worker_proc), rss_mb(redis_proc)

    print(
        f"\nmecodes core benchmark: {args.files} files, {args.commits} commits, pack {pack_mb:.1f} MB; "
        f"medians of {args.reps} reps"
    )
    print_table_header()
    for name, t in (("cold clone", clone), ("worktree add (cached repo)", worktree)):
        print_table_row(name, median_ms(t.api), median_ms(t.in_job), median_ms(t.raw))
    print(f"{'poll GET /admin/jobs/{id}':<28}{latency_text(polls)}")
    parts = ", ".join(f"{'master' if master else 'worker'} {mb:.1f}" for master, mb in gunicorn_rss)
    print(f"{'RSS MB: gunicorn':<28}{sum(mb for _, mb in gunicorn_rss):.1f} ({parts})")
    print(f"{'RSS MB: rq worker':<28}{worker_rss:.1f}")
    print(f"{'RSS MB: redis-server':<28}{redis_rss:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_origin_options(parser, files=3000)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each timing, median shown (default 3)")
    parser.add_argument("--polls", type=int, default=1000, help="job polls for the latency figure (default 1000)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(args, tmp)


if __name__ == "__main__":
    main()
