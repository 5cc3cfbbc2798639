"""Web Push: what sending costs the worker's memory, and how fast a notification reaches a push service.

- Memory, each in a fresh interpreter (median of --reps): the worker's own modules, then what pywebpush adds
  (domain.delivery, which the worker loads at start), then Apprise with its plugins (loaded only in a notification's
  job process, and only when MECODES_NOTIFY_URLS is set); and the running worker's PSS, and that of a notification's
  job process at its peak while it sends to a device and an Apprise channel.
- Time: one push from this process (encrypted, signed, POSTed to the tests' stand-in push service on 127.0.0.1, which
  checks and decrypts it), median of --pushes; then `worker.jobs.notify` enqueued as the watcher does, until the
  stand-in has the push (and, with a channel, until the channel's endpoint has the message), median and max.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests
from redis import Redis
from rq import Queue
from stack import ROOT, VENV_BIN, bench_folder, running_stack

sys.path.insert(0, str(ROOT))  # the domain and the tests' stand-in push service, imported below
from domain import vapid
from domain.memory import MB, pss_bytes
from domain.notifications import ChatEvent
from domain.push_devices import Device, device_id
from domain.web_push import PushTarget, signer
from tests.support.push_service import JsonHook, PushService

MEMORY_PROBE = """
import json, sys, time, types
import psutil

def step(name, started):
    info = psutil.Process().memory_full_info()
    steps.append({"step": name, "rss": info.rss, "pss": info.pss, "ms": (time.perf_counter() - started) * 1000})

steps = []
stand_in = types.ModuleType("domain.delivery")
stand_in.deliver = None
sys.modules["domain.delivery"] = stand_in  # the worker as it was before notifications
started = time.perf_counter()
import worker.__main__
step("the worker's modules", started)
del sys.modules["domain.delivery"]
started = time.perf_counter()
import domain.delivery
step("+ pywebpush (domain.delivery)", started)
started = time.perf_counter()
import apprise, domain.channels
apprise.Apprise.instantiate("json://127.0.0.1:9/hook")
step("+ Apprise and its plugins", started)
print(json.dumps(steps))
"""


def memory_steps(reps: int) -> None:
    runs = []
    for _ in range(reps):
        done = subprocess.run(
            [str(VENV_BIN / "python"), "-c", MEMORY_PROBE], cwd=ROOT, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(done.stdout))
    print(f"{'imported (fresh interpreter)':<34}{'RSS MB':>8}{'PSS MB':>8}{'+PSS MB':>9}{'import ms':>11}")
    previous = None
    for i, name in enumerate(step["step"] for step in runs[0]):
        rss, pss, ms = (statistics.median(run[i][key] for run in runs) for key in ("rss", "pss", "ms"))
        added = f"{(pss - previous) / MB:>9.1f}" if previous is not None else f"{'':>9}"
        print(f"{name:<34}{rss / MB:>8.1f}{pss / MB:>8.1f}{added}{ms:>11.0f}")
        previous = pss


def one_push(tmp: Path, pushes: int) -> None:
    """PushTarget.send() from this process: encrypt, sign, POST, the stand-in's answer."""
    folder = tmp / "keys"
    with PushService() as service:
        service.expect_key = vapid.public_key(folder)
        subscription, _ = service.subscription("bench")
        now = time.time()
        device = Device(
            device_id(subscription["endpoint"]),
            "bench",
            ("finished",),
            subscription["endpoint"],
            subscription["keys"]["p256dh"],
            subscription["keys"]["auth"],
            now,
            now,
        )
        event = bench_event()
        key = signer(vapid.private_pem(folder))
        with requests.Session() as session:
            target = PushTarget(device, event, key, "mailto:bench@example.com", session)
            times = []
            for _ in range(pushes):
                started = time.perf_counter()
                assert target.send().outcome == "sent"
                times.append(time.perf_counter() - started)
        assert service.errors() == [] and len(service.payloads("bench")) == pushes
    print(f"one push from the worker's process: median {statistics.median(times) * 1000:.1f} ms ({pushes} pushes)")


def bench_event() -> ChatEvent:
    key = f"bench-{time.time_ns()}"
    return ChatEvent("finished", "ses_bench", "Bench chat", "Done: all tests pass", "/#/chat/ses_bench", key)


class PeakWatch:
    """The highest PSS of the worker's job processes (its children that are not there at the start)."""

    def __init__(self, worker_pid: int):
        self.worker = psutil.Process(worker_pid)
        self.known = {child.pid for child in self.worker.children()}
        self.peak = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopped.wait(0.01):
            for child in self.worker.children():
                if child.pid not in self.known:
                    self.peak = max(self.peak, pss_bytes(child.pid) or 0)

    def stop(self) -> float:
        self.stopped.set()
        self.thread.join()
        return self.peak / MB


def through_the_worker(tmp: Path, notifications: int, channel: bool) -> None:
    with PushService() as service, JsonHook() as hook:
        env = {"MECODES_PUSH_LOOPBACK": "on", "MECODES_NOTIFY_DIR": str(tmp / "notifications")}
        if channel:
            env["MECODES_NOTIFY_URLS"] = f"json://{hook.url.removeprefix('http://')}/hook"
        with running_stack(tmp, "file:///nowhere/", **env) as stack:
            status, key = stack.api.request("GET", "/admin/notifications/key")
            service.expect_key = key["public_key"]
            subscription, _ = service.subscription("phone")
            status, _ = stack.api.request("POST", "/admin/notifications/subscriptions", {"subscription": subscription})
            assert status == 201
            queue = Queue("bench", connection=Redis.from_url(stack.redis_url))
            time.sleep(1)  # the worker idle, as between two turns
            worker_pss = (pss_bytes(stack.worker.proc.pid) or 0) / MB
            push_times: list[float] = []
            hook_times: list[float] = []
            watch = PeakWatch(stack.worker.proc.pid)
            for n in range(notifications):
                started = time.perf_counter()
                queue.enqueue("worker.jobs.notify", bench_event().as_dict())
                arrived = wait_for(lambda n=n: len(service.payloads("phone")) > n)
                push_times.append(arrived - started)
                if channel:
                    hook_times.append(wait_for(lambda n=n: len(hook.received("/hook")) > n) - started)
                time.sleep(0.3)
            peak = watch.stop()
            assert service.errors() == []
    what = "with an Apprise channel" if channel else "no channel"
    print(f"worker.jobs.notify, {what}: the worker idle {worker_pss:.1f} MB PSS, a notification's job process at")
    print(f"  its peak {peak:.1f} MB PSS")
    print(f"  enqueued -> the push at the stand-in: {summary(push_times)}")
    if channel:
        print(f"  enqueued -> the channel's message:    {summary(hook_times)}")


def wait_for(arrived: Any, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if arrived():
            return time.perf_counter()
        time.sleep(0.002)
    raise AssertionError("the notification did not arrive")


def summary(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms ({len(seconds)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="fresh interpreters for the memory figures (default 3)")
    parser.add_argument("--pushes", type=int, default=50, help="pushes from this process (default 50)")
    parser.add_argument("--notifications", type=int, default=10, help="through the worker, per case (default 10)")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}")
    memory_steps(args.reps)
    with bench_folder() as tmp:
        one_push(tmp, args.pushes)
        for channel in (False, True):
            case = tmp / ("channel" if channel else "devices")
            case.mkdir()
            through_the_worker(case, args.notifications, channel)


if __name__ == "__main__":
    main()
