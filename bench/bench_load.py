"""Load: 50 concurrent clients poll a job's status through Caddy (with basic auth) for 30 s with `wrk`, while the
worker keeps cloning and making worktrees; prints throughput, p50/p99 latency, and the sidecar's memory before and
after (it must not grow).

Starts the production stack (`bin/start`) on free 127.0.0.1 ports, data in a temporary folder. Needs `wrk`
(Debian package). Run from the repo root: `.venv/bin/python bench/bench_load.py [--clients 50 --seconds 30]`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from bench_stack import AUTH, ProductionStack, production_stack
from stack import bench_folder, make_origin


def call(stack: ProductionStack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    request = urllib.request.Request(f"{stack.url}{path}", data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def wait(stack: ProductionStack, job: dict[str, Any]) -> dict[str, Any]:
    while job["status"] not in {"finished", "failed"}:
        time.sleep(0.05)
        job = call(stack, "GET", job["url"])
    return job


def keep_worker_busy(stack: ProductionStack, stop: threading.Event, done: list[str]) -> None:
    """Clone (or refresh) and make worktrees back to back until told to stop."""
    i = 0
    while not stop.is_set():
        job = wait(stack, call(stack, "POST", "/admin/repos/clone", {"repo": "bench/big"}))
        done.append(job["status"])
        job = wait(stack, call(stack, "POST", "/admin/worktrees", {"repo": "bench/big", "session_id": f"load{i}"}))
        done.append(job["status"])
        i += 1


def sidecar_rss_mb(stack: ProductionStack) -> float:
    gunicorn = next(p for p in psutil.Process(stack.proc.pid).children() if "gunicorn" in " ".join(p.cmdline()))
    return sum(p.memory_info().rss for p in [gunicorn, *gunicorn.children()]) / 2**20


def run(tmp: Path, clients: int, seconds: int, files: int) -> None:
    origin_root = tmp / "origin"
    origin_root.mkdir()
    make_origin(origin_root, "bench/big", files, commits=3)
    with production_stack(tmp, MECODES_GIT_BASE_URL=f"file://{origin_root}/", MECODES_FETCH_MAX_AGE="0") as stack:
        polled = wait(stack, call(stack, "POST", "/admin/repos/clone", {"repo": "bench/big"}))
        rss_before = sidecar_rss_mb(stack)
        stop, done = threading.Event(), []
        busy = threading.Thread(target=keep_worker_busy, args=(stack, stop, done), daemon=True)
        busy.start()
        out = subprocess.run(
            [
                "wrk",
                f"-c{clients}",
                "-t2",
                f"-d{seconds}s",
                "--latency",
                "-H",
                f"Authorization: {AUTH}",
                f"{stack.url}{polled['url']}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        stop.set()
        busy.join()
        rss_after = sidecar_rss_mb(stack)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    rate = re.search(r"Requests/sec:\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(f"\nmecodes load benchmark: {clients} clients polling GET /admin/jobs/{{id}} through Caddy for {seconds} s")
    print(f"  throughput            {rate.group(1) if rate else '?'} requests/s")
    print(f"  latency               p50 {latency.get('50')}, p99 {latency.get('99')}")
    print(f"  non-2xx responses     {errors.group(1) if errors else 0}")
    print(f"  worker meanwhile      {len(done)} clone/worktree jobs ({done.count('finished')} finished)")
    print(f"  sidecar RSS           {rss_before:.1f} MB before, {rss_after:.1f} MB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--files", type=int, default=2000, help="files in the repo the worker clones meanwhile")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(tmp, args.clients, args.seconds, args.files)


if __name__ == "__main__":
    main()
