"""What the benchmarks share: a temporary folder, a generated origin repo, the stack (redis-server, RQ worker,
gunicorn sidecar on free 127.0.0.1 ports, and `opencode serve` when asked for) and a small JSON client that waits
for jobs."""

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
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the domain, imported below
from domain.startup import settle_plugin_sdk

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
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


@contextlib.contextmanager
def bench_folder() -> Iterator[Path]:
    """A temporary folder, removed at the end, also when the benchmark is killed with SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="mecodes-bench-") as tmp:
        yield Path(tmp)


# ---- figures


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def latency_text(seconds: list[float]) -> str:
    """'median …, p99 …' of a list of call durations."""
    p99 = sorted(seconds)[math.ceil(0.99 * len(seconds)) - 1] * 1000
    return f"median {median_ms(seconds):.2f} ms, p99 {p99:.2f} ms ({len(seconds)} calls)"


def print_table_header(raw: str = "raw git ms") -> None:
    """The header of the table; `raw` names the column of the raw equivalent."""
    print(f"{'operation':<28}{'API ms':>10}{'in-job ms':>11}{raw:>12}{'API/raw':>9}")


def print_table_row(name: str, api_ms: float, in_job_ms: float, raw_ms: float | None) -> None:
    """One row of the table; `raw_ms` None when there is no raw git equivalent."""
    raw = f"{raw_ms:>12.1f}{api_ms / raw_ms:>9.2f}" if raw_ms is not None else f"{'-':>12}{'-':>9}"
    print(f"{name:<28}{api_ms:>10.1f}{in_job_ms:>11.1f}{raw}")


# ---- origin repository


def random_text(rng: random.Random, vocabulary: list[str]) -> str:
    lines = []
    for _ in range(rng.randint(3, 120)):
        words = rng.choices(vocabulary, k=rng.randint(1, 14))
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 10**9)))
        lines.append(" " * rng.choice((0, 4, 8)) + " ".join(words))
    return "\n".join(lines) + "\n"


def add_origin_options(parser: argparse.ArgumentParser, files: int) -> None:
    """--files and --commits: the size of the origin repo a benchmark generates with make_origin."""
    parser.add_argument("--files", type=int, default=files, help=f"files in the origin repo (default {files})")
    parser.add_argument("--commits", type=int, default=5, help="commits in the origin repo (default 5)")


def make_origin(origin_root: Path, repo: str, files: int, commits: int) -> Path:
    """A bare repo `origin_root/<repo>.git` (packed) of `files` small text files in a few directories, built over
    `commits` commits."""
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
    bare = origin_root / f"{repo}.git"
    git("clone", "-q", "--bare", "--no-local", str(work), str(bare))
    shutil.rmtree(work)
    return bare


# ---- processes


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def start(exits: ExitStack, name: str, args: list[str], env: dict[str, str], logs: Path) -> Service:
    """Start `args` in its own process group, output to logs/<name>.log; stopped when `exits` closes."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    service = Service(name, proc, log)
    exits.callback(stop, service)
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

    def latency(self, path: str, calls: int) -> list[float]:
        """Durations of `calls` GETs of `path`, one after the other."""
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            status, _ = self.request("GET", path)
            times.append(time.perf_counter() - start)
            if status != 200:
                raise RuntimeError(f"GET {path}: HTTP {status}")
        return times


def in_job_seconds(job: dict[str, Any]) -> float:
    """Time the worker spent in the job (RQ's started_at to ended_at)."""
    return (datetime.fromisoformat(job["ended_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


# ---- the stack


@dataclass
class Stack:
    api: Api
    data: Path  # MECODES_DATA_DIR
    redis_url: str
    redis: Service
    worker: Service
    gunicorn: Service


@contextlib.contextmanager
def running_stack(tmp: Path, git_base_url: str, **env: str) -> Iterator[Stack]:
    """redis-server, the RQ worker and a one-worker gunicorn sidecar, with their data and logs in `tmp`; `env`
    adds or overrides environment variables. On an error in the body, prints the end of each log. Stopped at the
    end."""
    data, logs, redis_dir = tmp / "data", tmp / "logs", tmp / "redis"
    for folder in (data, logs, redis_dir):
        folder.mkdir()
    redis_port, api_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = (
        os.environ
        | {
            "MECODES_DATA_DIR": str(data),
            "REDIS_URL": redis_url,
            "MECODES_GIT_BASE_URL": git_base_url,
            "MECODES_QUEUE": "bench",
            "MECODES_FETCH_MAX_AGE": "3600",
            "MECODES_GC_INTERVAL": "0",  # no periodic GC running in the middle of a measurement
            "MECODES_WORK_STATE_MAX_AGE": "0",
            "MECODES_STACK_PID": str(os.getpid()),  # this process manages the stack
            "OPENCODE_URL": "",  # no opencode: health checks only Redis and the worker
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        | env
    )
    services: list[Service] = []
    with ExitStack() as exits:
        try:
            redis_cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port)]
            redis_cmd += ["--save", "", "--appendonly", "no", "--dir", str(redis_dir)]
            services.append(start(exits, "redis-server", redis_cmd, env, logs))
            wait_ready("redis-server", lambda: redis_answers(redis_url), services)
            services.append(start(exits, "worker", [str(VENV_BIN / "python"), "-m", "worker"], env, logs))
            gunicorn_cmd = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{api_port}", "--workers", "1"]
            # No control socket: gunicorn's default one is ~/.gunicorn/gunicorn.ctl, outside the temporary folder.
            gunicorn_cmd += ["--threads", "4", "--worker-class", "gthread", "--no-control-socket"]
            gunicorn_cmd += ["--worker-tmp-dir", str(tmp), "sidecar:create_app()"]
            services.append(start(exits, "gunicorn", gunicorn_cmd, env, logs))
            api = Api(api_port)
            wait_ready("the sidecar to report healthy", api.healthy, services)
            yield Stack(api, data, redis_url, *services)
        except Exception:
            print_log_tails(services)
            raise


@dataclass
class OpencodeServer:
    service: Service
    url: str
    api: Api  # to opencode's own HTTP API


def opencode_healthy(url: str) -> bool:
    """Whether `GET /global/health` says healthy within a second (a request sent while opencode is still starting
    may never be answered)."""
    try:
        with urllib.request.urlopen(f"{url}/global/health", timeout=1) as response:
            return json.load(response).get("healthy") is True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def running_opencode(home: Path) -> Iterator[OpencodeServer]:
    """`opencode serve` (node_modules/.bin) on a free 127.0.0.1 port, with HOME, its XDG folders (data, state, config,
    cache) and its log in `home` (which may hold its config already), ready once healthy. On an error in the body,
    prints the end of its log. Stopped at the end."""
    home.mkdir(parents=True, exist_ok=True)
    settle_plugin_sdk(home / "config" / "opencode")  # as bin/start does for the stack's opencode
    port = free_port()
    env = os.environ | {"HOME": str(home)}
    env |= {f"XDG_{kind}_HOME": str(home / kind.lower()) for kind in ("DATA", "STATE", "CONFIG", "CACHE")}
    cmd = [str(ROOT / "node_modules" / ".bin" / "opencode"), "serve", "--hostname", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with ExitStack() as exits:
        service = start(exits, "opencode", cmd, env, home)
        try:
            wait_ready("opencode to report healthy", lambda: opencode_healthy(url), [service], timeout=60)
            yield OpencodeServer(service, url, Api(port))
        except Exception:
            print_log_tails([service])
            raise
