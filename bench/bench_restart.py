"""Benchmark of restarts: how long the production stack takes to stop on SIGTERM (idle, and with `GET /event` streams
held open through Caddy, as phones keep them), and to start until `/admin/health` answers 200 through Caddy with
Redis's append-only file empty or holding many finished jobs; and what Redis's fsync policy costs a job.

Starts `bin/start` (bench_stack.py's `production_stack`) on free 127.0.0.1 ports with its data in a temporary folder
removed at the end. Run from the repo root: `.venv/bin/python bench/bench_restart.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import os
import shutil
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
from bench_stack import AUTH, production_stack
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, SimpleWorker
from stack import ROOT, bench_folder, free_port, redis_answers, wait_ready

QUEUE = "mecodes"  # the stack's default MECODES_QUEUE
T = TypeVar("T")


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(f"no {name} in the Procfile")


@contextlib.contextmanager
def procfile_redis(redis_dir: Path, *overrides: str) -> Iterator[Redis]:
    """The Procfile's own redis-server line, run as procman runs it, on a free port with its data in `redis_dir`;
    `overrides` are more options (later ones win). Shut down at the end (flushing its append-only file)."""
    port = free_port()
    redis_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"MECODES_REDIS_PORT": str(port), "MECODES_REDIS_DIR": str(redis_dir)}
    command = " ".join([procfile_command("redis"), *overrides])
    with (redis_dir / "redis.log").open("wb") as log:
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], env=env, cwd=ROOT, stdout=log, stderr=log)
    redis = Redis(port=port)
    try:
        wait_ready("redis-server", lambda: redis_answers(f"redis://127.0.0.1:{port}/0"), [])
        yield redis
    finally:
        with contextlib.suppress(RedisConnectionError):
            redis.shutdown()
        proc.wait(30)


def clone_result(repo: str) -> dict[str, Any]:
    """What a finished clone job returns (worker.jobs.clone_repo's shape)."""
    return {"repo": repo, "path": f"/vol/projects/repos/{repo.replace('/', '__')}", "default_branch": "main"}


def run_jobs(redis: Redis, jobs: int) -> float:
    """`jobs` clone-like jobs enqueued and run to `finished` by an in-process RQ worker, so Redis holds what real
    jobs leave (job, meta with progress, result, registries, and the append-only file's history of them). Seconds."""
    queue = Queue(QUEUE, connection=redis)
    started = time.perf_counter()
    batch = 500
    for first in range(0, jobs, batch):
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    clone_result,
                    args=(f"owner{i}/repo{i}",),
                    result_ttl=86400,
                    failure_ttl=604800,
                    description=f"clone owner{i}/repo{i}",
                    meta={
                        "kind": "clone",
                        "progress": {"step": "cloning", "phase": "Resolving deltas", "percent": 100},
                    },
                )
                for i in range(first, min(jobs, first + batch))
            ]
        )
    SimpleWorker([queue], connection=redis).work(burst=True, logging_level="WARNING")
    return time.perf_counter() - started


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class EventStream:
    """`GET /event` through Caddy, read line by line in a thread until the server closes it."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        self.conn.request("GET", "/event", headers={"Authorization": AUTH, "Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        self.receiving = threading.Event()
        self.closed_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            for line in self.response:
                if line.strip():
                    self.receiving.set()
        self.closed_at = time.perf_counter()


def jobs_list_ms(url: str, calls: int = 20) -> float:
    """Median of `GET /admin/jobs` (the 50 most recent) through Caddy."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(f"{url}/admin/jobs", headers={"Authorization": AUTH})):
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def retried(start: Callable[[Path], T], folder: Path) -> T:
    """`start(folder/try-N)`, tried again when the stack did not come up (on a busy machine production_stack's first
    authenticated request, a bcrypt comparison at cost 14, can outlast its 2 s), saying why."""
    for attempt in range(3):
        (folder / f"try-{attempt}").mkdir(parents=True)
        try:
            return start(folder / f"try-{attempt}")
        except (AssertionError, RuntimeError) as error:
            tail = (folder / f"try-{attempt}" / "stack.log").read_text(errors="replace").splitlines()[-5:]
            print(f"  (start {attempt + 1} failed: {error}; again. The end of its log:)", *tail, sep="\n    ")
    raise RuntimeError("the stack did not start three times in a row")


def restart_once(folder: Path, seeded: Path | None, streams: int, grace: int) -> dict[str, Any]:
    """Start the stack on `folder` (Redis's folder copied from `seeded` first), then stop it with SIGTERM holding
    `streams` event streams open."""
    if seeded:
        shutil.copytree(seeded, folder / "redis")
    with production_stack(folder, MECODES_STOP_GRACE=str(grace)) as stack:
        figures: dict[str, Any] = {
            "redis ready s": stack.ready["redis"],
            "health 200 s": stack.ready["/admin/health 200 via Caddy"],
            "jobs list ms": jobs_list_ms(stack.url),
        }
        held = [EventStream(stack.url) for _ in range(streams)]
        for stream in held:
            assert stream.receiving.wait(30), "an event stream got nothing"
        everything = [psutil.Process(stack.proc.pid), *psutil.Process(stack.proc.pid).children(recursive=True)]
        sigterm_at = time.perf_counter()  # production_stack sends SIGTERM on leaving this block, then waits
    figures["stop s"] = time.perf_counter() - sigterm_at
    _, alive = psutil.wait_procs(everything, timeout=5)
    figures["left running"] = len([p for p in alive if p.status() != psutil.STATUS_ZOMBIE])
    closed = [s.closed_at - sigterm_at for s in held if s.closed_at is not None]
    figures["streams closed s"] = f"{min(closed):.1f}-{max(closed):.1f}" if closed else "-"
    return figures


def fsync_policies(tmp: Path, jobs: int, rounds: int) -> None:
    """Prints the jobs per second an RQ worker gets through with Redis unpersisted, and with each AOF fsync policy."""
    policies = {
        "no persistence": ("--appendonly", "no"),
        "AOF, appendfsync everysec": (),
        "AOF, appendfsync always": ("--appendfsync", "always"),
    }
    best = dict.fromkeys(policies, 0.0)
    for round_ in range(rounds):
        for n, (name, options) in enumerate(policies.items()):
            with procfile_redis(tmp / f"policy-{round_}-{n}", *options) as redis:
                best[name] = max(best[name], jobs / run_jobs(redis, jobs))
    print(f"fsync policy: {jobs:,} jobs enqueued and run to finished by an in-process RQ worker (best of {rounds})")
    for name, rate in best.items():
        print(f"  {name:<28}{rate:>8.0f} jobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="finished jobs in the big append-only file")
    parser.add_argument("--streams", type=int, default=5, help="event streams held open through Caddy")
    parser.add_argument("--stop-grace", type=int, default=40, help="MECODES_STOP_GRACE (default: production's)")
    parser.add_argument("--policy-jobs", type=int, default=500, help="jobs run per fsync policy and round")
    parser.add_argument("--policy-rounds", type=int, default=3, help="rounds over the policies (the best counts)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        fsync_policies(tmp, args.policy_jobs, args.policy_rounds)

        seeded = tmp / "seeded-redis"
        with procfile_redis(seeded) as redis:
            seconds = run_jobs(redis, args.jobs)
            keys = redis.dbsize()
        print(
            f"\n{args.jobs:,} finished jobs made in {seconds:.1f} s: {keys:,} keys, append-only file"
            f" {folder_bytes(seeded) / 2**20:.1f} MB"
        )

        rows = []
        for label, source in (("empty", None), (f"{args.jobs:,} finished jobs", seeded)):
            for streams in (0, args.streams):
                start = functools.partial(restart_once, seeded=source, streams=streams, grace=args.stop_grace)
                run = retried(start, tmp / f"run-{len(rows)}")
                rows.append((label, streams, run))
        print(f"\nrestarts (MECODES_STOP_GRACE={args.stop_grace}; times from bin/start, and from SIGTERM)")
        header = ("AOF", "streams", "redis ready s", "health 200 s", "jobs list ms", "stop s", "streams closed s")
        print(f"{header[0]:<24}{header[1]:>8}" + "".join(f"{h:>18}" for h in header[2:]) + f"{'left running':>14}")
        for label, streams, run in rows:
            cells = [run["redis ready s"], run["health 200 s"], run["jobs list ms"], run["stop s"]]
            line = f"{label:<24}{streams:>8}" + "".join(f"{c:>18.2f}" for c in cells)
            print(f"{line}{run['streams closed s']:>18}{run['left running']:>14}")


if __name__ == "__main__":
    main()
