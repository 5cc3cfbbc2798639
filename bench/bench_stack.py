"""Benchmark of the production stack: time from `bin/start` to each service being ready and to `/admin/health`
answering 200 through Caddy (first boot: empty volume), then the resident memory of every process once idle.

Starts `bin/start` (the Procfile: Redis, opencode, sidecar, worker, gate, Caddy) on free 127.0.0.1 ports, with its data
in a temporary folder removed at the end. Run from the repo root: `.venv/bin/python bench/bench_stack.py`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from stack import ROOT, bench_folder, free_port, redis_answers

Probe = Callable[[], bool]


def answers(url: str, auth: str | None = None, status: int = 200, timeout: float = 2) -> Probe:
    def probe() -> bool:
        request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status == status
        except urllib.error.HTTPError as error:
            return error.code == status
        except OSError:
            return False

    return probe


def worker_registered(redis_url: str) -> Probe:
    from redis import Redis
    from rq import Worker

    return lambda: redis_answers(redis_url) and bool(Worker.all(connection=Redis.from_url(redis_url)))


AUTH = "Basic " + base64.b64encode(b"bench:bench-password").decode()


@dataclass
class ProductionStack:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    ready: dict[str, float]  # seconds from start until each service answered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['HTTP']}"


@contextlib.contextmanager
def production_stack(
    tmp: Path, wrap: Callable[[list[str]], list[str]] = list, **extra_env: str
) -> Iterator[ProductionStack]:
    """`bin/start` on free loopback ports with its data in `tmp` (its command line passed through `wrap`, to run it
    inside a memory cgroup say); yields once /admin/health is 200 through Caddy, stops it with SIGTERM at the end."""
    ports = {name: free_port() for name in ("HTTP", "REDIS", "OPENCODE", "SIDECAR", "GATE")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MECODES_", "REDIS_URL", "OPENCODE_URL"))}
    env |= {f"MECODES_{name}_PORT": str(port) for name, port in ports.items()}
    env |= {
        "CADDY_AUTH_USER": "bench",
        "CADDY_AUTH_PASSWORD": "bench-password",
        "MECODES_HTTP_BIND": "127.0.0.1",
        "MECODES_DATA_DIR": str(tmp / "projects"),
        "MECODES_OPENCODE_HOME": str(tmp / "opencode"),
        "MECODES_RUN_DIR": str(tmp / "run"),
        "HOME": str(tmp / "home"),
        **extra_env,
    }
    redis_url = f"redis://127.0.0.1:{ports['REDIS']}/0"
    probes: dict[str, Probe] = {
        "redis": lambda: redis_answers(redis_url),
        "sidecar": answers(f"http://127.0.0.1:{ports['SIDECAR']}/admin/openapi.json"),
        "worker": worker_registered(redis_url),
        "opencode": answers(f"http://127.0.0.1:{ports['OPENCODE']}/global/health"),
        "caddy": answers(f"http://127.0.0.1:{ports['HTTP']}/admin/repos", status=401),
        "/admin/health 200 via Caddy": answers(f"http://127.0.0.1:{ports['HTTP']}/admin/health"),
    }
    log = (tmp / "stack.log").open("wb")
    start = time.perf_counter()
    proc = subprocess.Popen(wrap([str(ROOT / "bin/start")]), cwd=ROOT, env=env, stdout=log, stderr=log)
    ready: dict[str, float] = {}
    try:
        deadline = start + 180
        while len(ready) < len(probes):
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"the stack did not come up; see {tmp / 'stack.log'}")
            for name, probe in probes.items():
                if name not in ready and probe():
                    ready[name] = time.perf_counter() - start
            time.sleep(0.05)
        # the first right password costs a bcrypt (cost 14: a second of CPU, several on a busy machine)
        signed_in = answers(f"http://127.0.0.1:{ports['HTTP']}/admin/repos", AUTH, timeout=60)
        assert signed_in(), "authenticated request failed"
        yield ProductionStack(proc, ports, ready)
    finally:
        proc.send_signal(signal.SIGTERM)
        stop_start = time.perf_counter()
        code = proc.wait(120)
        print(f"{'stop on SIGTERM':<32}{time.perf_counter() - stop_start:.2f} s, exit code {code}")


def boot(tmp: Path, idle_seconds: float) -> None:
    with production_stack(tmp) as stack:
        proc, ready = stack.proc, stack.ready
        time.sleep(idle_seconds)  # let start-up work settle before reading memory
        print("\nmecodes stack benchmark: first boot (empty volume), then idle")
        print(f"{'ready after (s)':<32}")
        for name, seconds in sorted(ready.items(), key=lambda item: item[1]):
            print(f"  {name:<30}{seconds:>6.2f}")
        print(f"{'resident memory once idle (MB)':<32}")
        total = psutil.Process(proc.pid).memory_info().rss / 2**20
        print(f"  {'procman (bash)':<30}{total:>6.1f}")
        names = [line.split(":")[0] for line in (ROOT / "Procfile").read_text().splitlines() if line[:1].isalpha()]
        for name, child in zip(names, psutil.Process(proc.pid).children(), strict=True):  # started in this order
            family = [child, *child.children(recursive=True)]
            mb = sum(p.memory_info().rss for p in family) / 2**20
            total += mb
            print(f"  {name:<30}{mb:>6.1f}  ({len(family)} process(es), RSS summed)")
        print(f"  {'total':<30}{total:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10, help="seconds to stay idle before reading memory")
    args = parser.parse_args()
    with bench_folder() as tmp:
        boot(tmp, args.idle)


if __name__ == "__main__":
    main()
