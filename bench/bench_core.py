"""Benchmark of the mecodes core: clone and worktree through the API versus raw git, job-poll latency, memory.

Starts its own redis-server, RQ worker and gunicorn sidecar on 127.0.0.1 (free ports), all inside a temporary
folder that is removed at the end. Run from the repo root: `.venv/bin/python bench/bench_core.py [--files N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from redis import Redis
from redis.exceptions import RedisError

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
REPO = "bench/big"
TERMINAL = {"finished", "failed", "canceled", "stopped"}
POLL_INTERVAL = 0.02
JOB_TIMEOUT = 600.0
# Like the sidecar's own git environment: no GIT_* variables from the caller, C locale.
GIT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"LC_ALL": "C"}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


# ---- origin repository


def random_text(rng: random.Random, vocabulary: list[str]) -> str:
    lines = []
    for _ in range(rng.randint(3, 120)):
        words = rng.choices(vocabulary, k=rng.randint(1, 14))
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 10**9)))
        lines.append(" " * rng.choice((0, 4, 8)) + " ".join(words))
    return "\n".join(lines) + "\n"


def make_origin(origin_root: Path, files: int, commits: int) -> Path:
    """A bare repo (packed) of `files` small text files in a few directories, built over `commits` commits."""
    rng = random.Random(1234)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(400)]
    work = origin_root / "_work"
    git("init", "-q", "-b", "main", str(work))
    folders = ("src", "src/core", "src/util", "docs", "tests", "assets/data")
    paths = [work / rng.choice(folders) / f"f{i:05d}.{rng.choice(('py', 'txt', 'md'))}" for i in range(files)]
    for c in range(commits):
        done, upto = c * files // commits, (c + 1) * files // commits
        for path in paths[done:upto] + rng.sample(paths[:done], done // 20):  # new files, and edits to 5% of old
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(random_text(rng, vocabulary))
        git("add", "-A", cwd=work)
        git("-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", f"c{c}", cwd=work)
    bare = origin_root / f"{REPO}.git"
    git("clone", "-q", "--bare", "--no-local", str(work), str(bare))
    shutil.rmtree(work)
    return bare


# ---- processes


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def start(stack: ExitStack, name: str, args: list[str], env: dict[str, str], logs: Path) -> Service:
    """Start `args` in its own process group, output to logs/<name>.log; stopped when `stack` closes."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    service = Service(name, proc, log)
    stack.callback(stop, service)
    return service


def stop(service: Service) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        if service.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.proc.wait(wait)


def wait_ready(what: str, ready: Callable[[], bool], services: list[Service], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for s in services:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited with code {s.proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def redis_answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=1) as redis:
            return bool(redis.ping())
    except RedisError:
        return False


def print_log_tails(services: list[Service], lines: int = 15) -> None:
    for s in services:
        tail = s.log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last lines of {s.name} log ---", *tail, sep="\n", file=sys.stderr)


# ---- HTTP


class Api:
    """JSON over one keep-alive connection, reopened after an idle second (gunicorn drops idle ones after 2 s)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.last_use = 0.0

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        if time.monotonic() - self.last_use > 1:
            self.conn.close()  # the next request connects again
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = self.conn.getresponse()
            data = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        self.last_use = time.monotonic()
        return response.status, data

    def healthy(self) -> bool:
        try:
            return self.request("GET", "/admin/health")[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def submit(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, job = self.request(method, path, body)
        if status != 202:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {job}")
        return job

    def wait(self, job: dict[str, Any]) -> dict[str, Any]:
        """Poll the job every POLL_INTERVAL until it ends; raise unless it finished."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while job["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job['id']} ({job['kind']}) still {job['status']} after {JOB_TIMEOUT:g}s")
            time.sleep(POLL_INTERVAL)
            status, job = self.request("GET", job["url"])
            if status != 200:
                raise RuntimeError(f"GET job: HTTP {status}: {job}")
        if job["status"] != "finished":
            raise RuntimeError(f"job {job['id']} ({job['kind']}) ended {job['status']}: {job['error']}")
        return job


def in_job_seconds(job: dict[str, Any]) -> float:
    """Time the worker spent in the job (RQ's started_at to ended_at)."""
    return (datetime.fromisoformat(job["ended_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


# ---- measurements


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


def poll_latency(api: Api, url: str, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        status, _ = api.request("GET", url)
        times.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"GET {url}: HTTP {status}")
    return times


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


# ---- main


def run(args: argparse.Namespace, stack: ExitStack) -> None:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mecodes-bench-")))
    origin_root, data, scratch, logs = (tmp / d for d in ("origin", "data", "scratch", "logs"))
    for folder in (origin_root, data, scratch, logs, tmp / "redis"):
        folder.mkdir()
    origin = make_origin(origin_root, args.files, args.commits)
    origin_url = f"file://{origin}"
    pack_mb = sum(p.stat().st_size for p in (origin / "objects" / "pack").iterdir()) / 2**20

    redis_port, api_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = os.environ | {
        "MECODES_DATA_DIR": str(data),
        "REDIS_URL": redis_url,
        "MECODES_GIT_BASE_URL": f"file://{origin_root}/",
        "MECODES_QUEUE": "bench",
        "MECODES_FETCH_MAX_AGE": "3600",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    services: list[Service] = []
    try:
        redis_cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port)]
        redis_cmd += ["--save", "", "--appendonly", "no", "--dir", str(tmp / "redis")]
        services.append(start(stack, "redis-server", redis_cmd, env, logs))
        wait_ready("redis-server", lambda: redis_answers(redis_url), services)
        services.append(start(stack, "worker", [str(VENV_BIN / "python"), "-m", "worker"], env, logs))
        gunicorn_cmd = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{api_port}", "--workers", "1"]
        # No control socket: gunicorn's default one is ~/.gunicorn/gunicorn.ctl, outside the temporary folder.
        gunicorn_cmd += ["--threads", "4", "--worker-class", "gthread", "--no-control-socket"]
        gunicorn_cmd += ["--worker-tmp-dir", str(tmp), "sidecar:create_app()"]
        services.append(start(stack, "gunicorn", gunicorn_cmd, env, logs))
        api = Api(api_port)
        wait_ready("the sidecar to report healthy", api.healthy, services)

        clone = bench_clone(api, origin_url, scratch, args.reps)
        worktree, job_url = bench_worktree(api, origin_url, scratch, args.reps)
        polls = sorted(poll_latency(api, job_url, args.polls))
        redis_proc, worker_proc, gunicorn = (psutil.Process(s.proc.pid) for s in services)
        gunicorn_rss = [(p is gunicorn, rss_mb(p)) for p in (gunicorn, *gunicorn.children(recursive=True))]
        worker_rss, redis_rss = rss_mb(worker_proc), rss_mb(redis_proc)
    except Exception:
        print_log_tails(services)
        raise

    print(
        f"\nmecodes core benchmark: {args.files} files, {args.commits} commits, pack {pack_mb:.1f} MB; "
        f"medians of {args.reps} reps"
    )
    print(f"{'operation':<28}{'API ms':>10}{'in-job ms':>11}{'raw git ms':>12}{'API/raw':>9}")
    for name, t in (("cold clone", clone), ("worktree add (cached repo)", worktree)):
        api_ms, raw_ms = median_ms(t.api), median_ms(t.raw)
        print(f"{name:<28}{api_ms:>10.1f}{median_ms(t.in_job):>11.1f}{raw_ms:>12.1f}{api_ms / raw_ms:>9.2f}")
    p99 = polls[math.ceil(0.99 * len(polls)) - 1] * 1000
    print(f"{'poll GET /admin/jobs/{id}':<28}median {median_ms(polls):.2f} ms, p99 {p99:.2f} ms ({len(polls)} calls)")
    parts = ", ".join(f"{'master' if master else 'worker'} {mb:.1f}" for master, mb in gunicorn_rss)
    print(f"{'RSS MB: gunicorn':<28}{sum(mb for _, mb in gunicorn_rss):.1f} ({parts})")
    print(f"{'RSS MB: rq worker':<28}{worker_rss:.1f}")
    print(f"{'RSS MB: redis-server':<28}{redis_rss:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000, help="files in the origin repo (default 3000)")
    parser.add_argument("--commits", type=int, default=5, help="commits in the origin repo (default 5)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each timing, median shown (default 3)")
    parser.add_argument("--polls", type=int, default=1000, help="job polls for the latency figure (default 1000)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on kill too
    with ExitStack() as stack:
        run(args, stack)


if __name__ == "__main__":
    main()
