"""Benchmark of notifications: the time from a chat going idle to its push reaching the phone's push service.

Starts the production stack (`bin/start`, as the tests do) whose model is the tests' stand-in
(`tests/support/fake_llm.py`), a stand-in Web Push service on 127.0.0.1 that checks and decrypts every push
(`tests/support/push_service.py`) and a phone registered there; then makes `--chats` chats one after the other, each
with a prompt answered at once, and times, for each, opencode's `session.idle` (as this process reads it on
`GET /global/event`, like the watcher) and the reply's completion time (opencode's own clock) to the moment the push
service received the `finished` push. What lies between: the watcher reads the reply (one call), claims the event and
enqueues `worker.jobs.notify`; the RQ worker forks, the job loads pywebpush, encrypts, signs and posts. Also prints
the watcher's PSS from `/admin/memory`. Run from the repo root: `.venv/bin/python bench/bench_notify.py [--chats N]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from stack import ROOT, bench_folder

sys.path.insert(0, str(ROOT))  # domain and tests, imported below
from tests.conftest import Origin, wait_until
from tests.support.fake_llm import FakeLLM
from tests.support.push_service import PushService
from tests.test_stack import RunningStack, new_chat, start_stack, stop

PHONE = "phone"


class IdleTimes:
    """When each session was last reported idle on opencode's global event stream (this process's clock)."""

    def __init__(self, opencode_url: str):
        self.at: dict[str, float] = {}
        self.response = urllib.request.urlopen(f"{opencode_url}/global/event")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.response:
            if line.startswith(b"data:"):
                payload = json.loads(line[5:]).get("payload") or {}
                if payload.get("type") == "session.idle":
                    self.at[payload["properties"]["sessionID"]] = time.time()


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(share * len(values)))]


def run(chats: int, tmp: Path) -> None:
    (tmp / "origin").mkdir()
    origin = Origin(tmp / "origin")
    origin.create("bench/notify")
    with FakeLLM() as llm, PushService() as push:
        stack = start_stack(tmp / "stack", origin, llm.url, MECODES_PUSH_LOOPBACK="on")
        try:
            measure(stack, push, chats)
        finally:
            stop(stack)


def measure(stack: RunningStack, push: PushService, chats: int) -> None:
    wait_until(lambda: "watcher INFO following" in stack.log.read_text(errors="replace"), 60, "the watcher")
    push.expect_key = stack.request("GET", "/admin/notifications/key")[1]["public_key"]
    subscription, _ = push.subscription(PHONE)
    assert stack.request("POST", "/admin/notifications/subscriptions", {"subscription": subscription})[0] == 201
    idle = IdleTimes(f"http://127.0.0.1:{stack.env['MECODES_OPENCODE_PORT']}")
    from_idle, from_completed = [], []
    for i in range(chats):
        chat = new_chat(stack, "bench/notify", f"SAY Reply {i}")
        sid = chat["session_id"]
        pushed = wait_until(
            lambda sid=sid: next((p for p in push.received(PHONE) if p.payload and p.payload["session_id"] == sid), 0),
            60,
            f"the push of chat {i}",
        )
        query = f"directory={chat['path']}&limit=1"
        reply = stack.request("GET", f"/session/{sid}/message?{query}")[1][-1]["info"]
        from_idle.append(pushed.at - wait_until(lambda sid=sid: idle.at.get(sid), 10, "session.idle"))
        from_completed.append(pushed.at - reply["time"]["completed"] / 1000)
    assert push.errors() == [], push.errors()
    memory = stack.request("GET", "/admin/memory")[1]
    watcher = next(s for s in memory["services"] if s["name"] == "watcher")

    print(f"\nmecodes notification benchmark: {chats} chats, one finished push each")
    for name, values in (("session.idle → push received", from_idle), ("reply completed → push", from_completed)):
        median, p90 = statistics.median(values) * 1000, percentile(values, 0.9) * 1000
        print(f"{name:<34}median {median:6.0f} ms, p90 {p90:6.0f} ms, max {max(values) * 1000:6.0f} ms")
    print(f"{'watcher PSS':<34}{watcher['pss_bytes'] / 2**20:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=10, help="chats, each timed once (default 10)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(args.chats, tmp)


if __name__ == "__main__":
    main()
