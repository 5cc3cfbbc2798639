"""Benchmark of the whole stack on a 1 GB machine: a 1 GiB memory cgroup (v1 or v2, whichever the machine has;
needs root), no swap, the stand-in model (tests/support/fake_llm.py), a 3,000-file repo.

Steps: the stack starts (`bin/start` inside the group); 8 chats are made one after another through
`POST /admin/chats` and each is answered; then 2 of them run a command holding 300 MB at once while 2 others
stream a reply; then all is left idle until opencode has given its memory back. Figures at each step: the group's
peak, opencode's PSS, what the OOM killer took, whether procman and opencode lived, how long health was not 200,
chats lost. Run from the repo root as root: `.venv/bin/python bench/bench_small_machine.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench_stack import AUTH, ProductionStack, production_stack
from stack import ROOT, add_origin_options, bench_folder, make_origin

sys.path.insert(0, str(ROOT))  # sidecar and tests, imported below
from domain.memory import MB, pss_bytes
from tests.support import cgroup
from tests.support.fake_llm import FakeLLM, write_opencode_config

GIB = 1 << 30
REPO = "bench/app"
COMMAND = "RUN python3 -c \"import time; a = b'x' * (300 << 20); time.sleep(15); print('held 300 MB')\""
SETTLE_SECONDS = 10


class Client:
    """JSON through Caddy with the stack's credentials."""

    def __init__(self, stack: ProductionStack):
        self.base = stack.url

    def call(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} | ({"Authorization": AUTH} if auth else {})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except OSError:
            return 0, None
        return status, json.loads(raw) if raw.strip() else None

    def until(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := predicate():
                return value
            time.sleep(0.2)
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")

    def chats(self) -> dict[str, dict[str, Any]]:
        status, body = self.call("GET", "/admin/chats")
        return {c["session_id"]: c for c in body["chats"]} if status == 200 else {}

    def prompt(self, chat: dict[str, Any], text: str) -> None:
        path = f"/session/{chat['session_id']}/prompt_async?directory={chat['path']}"
        status, body = self.call("POST", path, {"parts": [{"type": "text", "text": text}]})
        if status not in (200, 204):
            raise RuntimeError(f"prompt: HTTP {status}: {body}")

    def tool_ends(self, chat: dict[str, Any]) -> list[str]:
        """How each tool call of the chat ended: `exit N`, or its status when it did not complete."""
        path = f"/session/{chat['session_id']}/message?directory={chat['path']}"
        status, messages = self.call("GET", path)
        parts = [p for m in (messages or []) for p in m["parts"] if p["type"] == "tool"] if status == 200 else []
        return [
            f"exit {(p['state'].get('metadata') or {}).get('exit')}"
            if p["state"]["status"] == "completed"
            else p["state"]["status"]
            for p in parts
        ]


class Watch:
    """Polls in the background: time not healthy, the pids opencode had, the group's peak use (page cache left
    out, as the sidecar counts it)."""

    def __init__(self, client: Client, run_dir: Path, group: cgroup.MemoryCgroup):
        self.client, self.run_dir, self.group = client, run_dir, group
        self.unhealthy_since: float | None = None
        self.unhealthy_seconds = 0.0
        self.opencode_pids: set[int] = set()
        self.peak_used = group.used_bytes()
        self.stopped = False
        threading.Thread(target=self._loop, daemon=True).start()

    def opencode_pid(self) -> int | None:
        try:
            return json.loads((self.run_dir / "services.json").read_text())["services"]["opencode"]["pid"]
        except (OSError, ValueError, KeyError):
            return None

    def _loop(self) -> None:
        while not self.stopped:
            healthy = self.client.call("GET", "/admin/health", auth=False)[0] == 200
            now = time.monotonic()
            if not healthy and self.unhealthy_since is None:
                self.unhealthy_since = now
            elif healthy and self.unhealthy_since is not None:
                self.unhealthy_seconds += now - self.unhealthy_since
                self.unhealthy_since = None
            if pid := self.opencode_pid():
                self.opencode_pids.add(pid)
            self.peak_used = max(self.peak_used, self.group.used_bytes())
            time.sleep(0.25)

    def take_peak(self) -> int:
        """The peak used since the last call."""
        peak, self.peak_used = self.peak_used, self.group.used_bytes()
        return peak


def row(step: str, watch: Watch, extra: str = "") -> None:
    pid = watch.opencode_pid()
    pss = (pss_bytes(pid) or 0) / MB if pid else 0
    print(f"{step:<44}{watch.take_peak() / MB:>9.0f}{pss:>11.0f}{watch.group.oom_kills():>6}  {extra}", flush=True)


def idle(client: Client, sessions: list[str]) -> bool:
    chats = client.chats()
    return all(chats.get(s, {}).get("status") in ("idle", "error") for s in sessions)


def run(tmp: Path, chats: int, files: int, commits: int, idle_wait: float) -> None:
    make_origin(tmp / "origin", REPO, files, commits)
    with FakeLLM() as llm, cgroup.memory_cgroup(GIB) as group:
        write_opencode_config(tmp / "opencode" / "config", llm.url)
        wrap = lambda argv: cgroup.command_in(group, argv)  # noqa: E731
        started = time.monotonic()
        with production_stack(tmp, wrap, MECODES_GIT_BASE_URL=f"file://{tmp / 'origin'}/") as stack:
            client = Client(stack)
            watch = Watch(client, tmp / "run", group)
            first_opencode = watch.opencode_pid()
            procman = stack.proc
            print(f"\nmecodes on a 1 GiB machine (cgroup v{group.version}, no swap), {files} files")
            print(f"{'step':<44}{'peak MB':>9}{'opencode':>11}{'OOM':>6}  notes")
            print("(peak: the group's peak use since the last step, page cache left out; opencode: its PSS in MB)")
            row(f"stack up (health 200 after {time.monotonic() - started:.1f} s)", watch)
            made: list[dict[str, Any]] = []
            for i in range(chats):
                begun = time.monotonic()
                status, job = client.call("POST", "/admin/chats", {"repo": REPO, "prompt": f"Say hello {i}"})
                assert status == 202, job
                waited = False

                def done(job: dict[str, Any] = job) -> dict[str, Any] | None:
                    nonlocal waited
                    body = client.call("GET", job["url"])[1] or {}
                    waited |= (body.get("progress") or {}).get("step", "").startswith("waiting for memory")
                    return body if body.get("status") in ("finished", "failed") else None

                result = client.until(done, 900, f"chat {i + 1}")
                if result["status"] != "finished":
                    print(f"chat {i + 1} failed: {result['error']}")
                    continue
                made.append(result["result"])
                client.until(lambda: idle(client, [c["session_id"] for c in made]), 120, f"chat {i + 1} answered")
                note = f"{time.monotonic() - begun:.1f} s" + (", waited for memory" if waited else "")
                row(f"chat {i + 1} answered", watch, note)

            calls_before = {c["session_id"]: len(client.tool_ends(c)) for c in made}
            for chat in made[:2]:
                client.prompt(chat, COMMAND)
            for chat in made[2:4]:
                client.prompt(chat, "SLOW 10 " + " ".join(f"word{n}" for n in range(40)))
            client.until(lambda: not idle(client, [c["session_id"] for c in made[:4]]), 30, "the four turns to start")
            client.until(lambda: idle(client, [c["session_id"] for c in made[:4]]), 300, "the four turns to end")
            ends = [end for c in made[:2] for end in client.tool_ends(c)[calls_before[c["session_id"]] :]]
            row("2 commands of 300 MB + 2 streaming, done", watch, f"the commands: {', '.join(ends)}")

            idle_from = time.monotonic()

            restarts = len(watch.opencode_pids)
            try:
                client.until(lambda: len(watch.opencode_pids) > restarts, idle_wait, "opencode to be restarted")
                client.until(lambda: client.chats(), 60, "the chat list after the restart")
                time.sleep(SETTLE_SECONDS)  # opencode's memory once it has served the list
                row(f"all idle: opencode restarted after {time.monotonic() - idle_from:.0f} s", watch)
            except TimeoutError:
                row(f"all idle for {idle_wait:.0f} s: opencode NOT restarted", watch)
            listed = client.until(lambda: client.chats(), 60, "the chat list")
            lost = [c["session_id"] for c in made if not listed.get(c["session_id"], {}).get("has_worktree")]
            watch.stopped = True
            print(f"{'procman alive':<44}{procman.poll() is None}")
            print(f"{'opencode processes (restarts + 1)':<44}{len(watch.opencode_pids)} (first pid {first_opencode})")
            print(f"{'seconds health was not 200':<44}{watch.unhealthy_seconds:.1f}")
            print(f"{'chats made / lost':<44}{len(made)} / {len(lost) + chats - len(made)}")
            print(f"{'OOM kills in the group':<44}{group.oom_kills()}")
            print(f"{'peak of the group, page cache included':<44}{group.peak_bytes() / MB:.0f} MB of {GIB / MB:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_origin_options(parser, files=3000)
    parser.add_argument("--chats", type=int, default=8, help="chats made one after another (default 8)")
    parser.add_argument("--idle-wait", type=float, default=400, help="seconds to wait for opencode to shrink")
    args = parser.parse_args()
    if why := cgroup.available():
        sys.exit(f"bench_small_machine: {why}")
    with bench_folder() as tmp:
        run(tmp, args.chats, args.files, args.commits, args.idle_wait)


if __name__ == "__main__":
    main()
