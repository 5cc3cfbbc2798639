"""Guessing the password through the real Caddy: 20 clients send wrong passwords for 30 s while one client polls a job
with the right one. Prints the legitimate client's p50/p99, the guesses that reached the hash (answered 401: each
cost a bcrypt) per minute and the CPU they took, and the CPU of Caddy, the gate and the sidecar (bcrypt runs in Caddy
on a stack without the gate, in the gate with it).

Two shapes of attack, one after the other: one address with 20 connections, then 20 addresses with one each (a
small botnet). Every client names its address in `Fly-Client-IP`, as Fly's proxy does, and the stack trusts that
header from 127.0.0.1 (`MECODES_TRUSTED_PROXY`); a stack that knows nothing of it sees them all as 127.0.0.1. Before
the attack it times the polled request, opencode's `/global/health` and a static file through Caddy, idle, and the
CPU each service spends on one. The guessers run at the lowest CPU priority (nice 19): on the internet their CPU
would be their own.

Starts the production stack (`bin/start`) on free 127.0.0.1 ports, data in a temporary folder. The guessers are
`wrk` (Debian package), each guess a new password. Run from the repo root: `.venv/bin/python bench/bench_login.py`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import bcrypt
import psutil
from bench_stack import AUTH, ProductionStack, production_stack
from stack import bench_folder, make_origin

LEGIT_ADDRESS = "192.0.2.10"
# One guesser thread per connection, each from its own address or all from one; a new password every guess. The
# statuses each thread saw are added up in done().
WRK_SCRIPT = r"""
local b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function base64(data)
  return ((data:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end

local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  prefix, spread, statuses, n = args[1], args[2] == "spread", {}, 0
end

function request()
  n = n + 1
  local address = prefix .. (spread and id or 1)
  local headers = { ["Authorization"] = "Basic " .. base64("phone:guess-" .. id .. "-" .. n),
                    ["Fly-Client-IP"] = address }
  return wrk.format("GET", "/admin/repos", headers)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + count end
  end
  for status, count in pairs(total) do io.write(string.format("status %d %d\n", status, count)) end
end
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms"


class Client:
    """One keep-alive connection through Caddy with the right password, from LEGIT_ADDRESS."""

    def __init__(self, stack: ProductionStack):
        self.conn = http.client.HTTPConnection("127.0.0.1", stack.ports["HTTP"], timeout=60)

    def get(self, path: str) -> tuple[int, float]:
        """Status and seconds taken."""
        start = time.perf_counter()
        status, _ = self.request("GET", path)
        return status, time.perf_counter() - start

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": AUTH, "Fly-Client-IP": LEGIT_ADDRESS, "Content-Type": "application/json"}
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()


SERVICES = {"Caddy": "caddy run", "gate": "-m gate", "sidecar": "gunicorn"}  # a word of each one's command line


class Processes:
    """The processes of Caddy, the gate (absent before it existed) and the sidecar, for their CPU times."""

    def __init__(self, stack: ProductionStack):
        services = psutil.Process(stack.proc.pid).children()
        self.families: dict[str, list[psutil.Process]] = {}
        for name, word in SERVICES.items():
            top = [p for p in services if word in " ".join(p.cmdline())]
            if top:
                self.families[name] = [*top, *(child for p in top for child in p.children(recursive=True))]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far (user and system) of each."""
        return {name: sum(sum(p.cpu_times()[:2]) for p in family) for name, family in self.families.items()}

    def used_since(self, before: dict[str, float]) -> dict[str, float]:
        return {name: seconds - before[name] for name, seconds in self.cpu().items()}


def cpu_text(used: dict[str, float], per: float = 1, unit: str = "s", digits: int = 1) -> str:
    return ", ".join(f"{name} {seconds / per:.{digits}f} {unit}" for name, seconds in used.items())


def idle(stack: ProductionStack, processes: Processes, job_url: str, calls: int) -> None:
    client = Client(stack)
    client.get("/global/health")  # the right password's first (and only) bcrypt
    paths = {"the polled job": job_url, "opencode's /global/health": "/global/health", "a static file": "/app.js"}
    for name, path in paths.items():
        before = processes.cpu()
        times = [client.get(path)[1] for _ in range(calls)]
        per_call = cpu_text(processes.used_since(before), calls / 1000, "ms", 2)
        print(f"  idle, {name:<26} {ms(times)}; CPU a request: {per_call}")


def bcrypt_seconds() -> float:
    """CPU seconds of one bcrypt at the cost `caddy hash-password` uses (14), as the gate runs it."""
    hashed = subprocess.run(["caddy", "hash-password"], input="x\n", capture_output=True, text=True, check=True)
    start = time.process_time()
    bcrypt.checkpw(b"y", hashed.stdout.strip().encode())
    return time.process_time() - start


def attack(
    stack: ProductionStack,
    processes: Processes,
    job_url: str,
    seconds: int,
    script: Path,
    spread: bool,
    bcrypt_cpu: float,
) -> None:
    """`seconds` of guessing while the legitimate client polls `job_url` every 100 ms; `bcrypt_cpu`: one bcrypt's."""
    polls: list[tuple[int, float]] = []
    stop = threading.Event()

    def poll() -> None:
        client = Client(stack)
        while not stop.is_set():
            polls.append(client.get(job_url))
            stop.wait(0.1)

    poller = threading.Thread(target=poll)
    cpu_before, box_before, started = processes.cpu(), psutil.cpu_times(), time.perf_counter()
    poller.start()
    command = ["nice", "-n", "19", "wrk", "-t20", "-c20", f"-d{seconds}s", "--timeout", "120s", "-s", str(script)]
    prefix = "203.0.113." if spread else "198.51.100."  # fresh addresses for each shape
    argv = [*command, stack.url, "--", prefix, "spread" if spread else "one"]
    out = subprocess.run(argv, capture_output=True, text=True)
    stop.set()
    poller.join()
    elapsed = time.perf_counter() - started
    used = processes.used_since(cpu_before)
    box = psutil.cpu_times()
    busy = sum(box[:3]) - sum(box_before[:3])  # user, nice, system of both cores
    statuses = {int(s): int(n) for s, n in re.findall(r"^status (\d+) (\d+)$", out.stdout, re.M)}
    times = [t for _, t in polls]
    failed = sum(1 for status, _ in polls if status != 200)
    hashed = statuses.get(401, 0)
    shape = "20 addresses, one connection each" if spread else "one address, 20 connections"
    print(f"\n  attack from {shape}, {elapsed:.0f} s:")
    print(f"    legitimate client   {ms(times)}, max {max(times) * 1000:.0f} ms, {len(times)} polls, {failed} not 200")
    print(f"    guesses answered    {sum(statuses.values()) / elapsed:.0f}/s: {dict(sorted(statuses.items()))}")
    cost = f"about {hashed * bcrypt_cpu:.0f} s of CPU"
    print(f"    reached the hash    {hashed} (401s), {hashed / elapsed * 60:.0f} a minute, {cost}")
    print(f"    CPU used            {cpu_text(used)}; both cores busy {busy:.0f} of {2 * elapsed:.0f} s")
    if out.returncode != 0:
        print(out.stdout, out.stderr)


def run(tmp: Path, seconds: int, calls: int) -> None:
    origin_root = tmp / "origin"
    origin_root.mkdir()
    make_origin(origin_root, "bench/small", 20, commits=1)
    env = {"MECODES_GIT_BASE_URL": f"file://{origin_root}/", "MECODES_TRUSTED_PROXY": "127.0.0.1/32"}
    script = tmp / "guess.lua"
    script.write_text(WRK_SCRIPT)
    with production_stack(tmp, **env) as stack:
        status, answer = Client(stack).request("POST", "/admin/repos/clone", {"repo": "bench/small"})
        assert status == 202, answer
        job = json.loads(answer)
        processes = Processes(stack)
        bcrypt_cpu = bcrypt_seconds()
        print(f"\nmecodes login benchmark (load average before: {load()}; one bcrypt: {bcrypt_cpu:.2f} s of CPU):")
        idle(stack, processes, job["url"], calls)
        for spread in (False, True):
            attack(stack, processes, job["url"], seconds, script, spread, bcrypt_cpu)
        print(f"  load average after: {load()}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in psutil.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of each attack")
    parser.add_argument("--calls", type=int, default=300, help="idle requests timed per path")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(tmp, args.seconds, args.calls)


if __name__ == "__main__":
    main()
