"""Benchmark of chats: a ready opencode session on a fresh worktree through `POST /admin/chats`, against the raw sum
of `git worktree add` and opencode's own session (and prompt) calls, and opencode's memory.

Starts its own redis-server, RQ worker, gunicorn sidecar and `opencode serve` on 127.0.0.1 (free ports), all inside a
temporary folder that is removed at the end. No LLM is reachable: prompts are recorded, never answered (each is
aborted once timed). Run from the repo root: `.venv/bin/python bench/bench_chat.py [--reps N]`.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import psutil
from stack import (
    Api,
    OpencodeServer,
    add_origin_options,
    bench_folder,
    git,
    in_job_seconds,
    latency_text,
    make_origin,
    median_ms,
    print_table_header,
    print_table_row,
    running_opencode,
    running_stack,
)

REPO = "bench/chat"
PROMPT = "Add a README"
PROMPT_BODY = {"parts": [{"type": "text", "text": PROMPT}]}
QUIET_CPU_SECONDS = 0.025  # opencode is idle when it uses less CPU than this in half a second (5% of one CPU)
SETTLE_TIMEOUT = 180.0

T = TypeVar("T")


@dataclass
class Runs:
    """Seconds per rep: the chat through the API, inside its job, and each step of the raw equivalent."""

    api: list[float] = field(default_factory=list)
    in_job: list[float] = field(default_factory=list)
    raw: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def timed(self, step: str, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)`, its duration recorded as the raw `step`."""
        start = time.perf_counter()
        value = call(*args)
        self.raw[step].append(time.perf_counter() - start)
        return value

    def raw_total(self) -> list[float]:
        """The raw steps summed, per rep."""
        return [sum(rep) for rep in zip(*self.raw.values(), strict=True)]


class Agent:
    """opencode's own HTTP API, and the load and memory of its process."""

    def __init__(self, server: OpencodeServer):
        self.api = server.api
        self.process = psutil.Process(server.service.proc.pid)

    def call(
        self, method: str, path: str, directory: Path | str | None = None, body: dict[str, Any] | None = None
    ) -> Any:
        """JSON over opencode's API, for the instance of `directory` when given; raises unless 200 or 204."""
        query = f"?{urlencode({'directory': str(directory)})}" if directory else ""
        status, data = self.api.request(method, path + query, body)
        if status not in (200, 204):
            raise RuntimeError(f"opencode {method} {path}: HTTP {status}: {data}")
        return data

    def abort_prompted(self, session_id: str, directory: Path | str) -> None:
        """Check that the session holds the prompt, then abort it: unanswered, it would stay busy retrying for ever
        (using CPU, and opencode ignores SIGTERM while a session is busy)."""
        deadline = time.monotonic() + 10
        while not any(
            message["info"]["role"] == "user" and any(part.get("text") == PROMPT for part in message["parts"])
            for message in self.call("GET", f"/session/{session_id}/message", directory)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"session {session_id} does not hold the prompt")
            time.sleep(0.1)
        self.call("POST", f"/session/{session_id}/abort", directory)

    def cpu_seconds(self) -> float:
        """CPU time used so far: user and system, its own and its finished children's."""
        return sum(self.process.cpu_times()[:4])

    def settle(self) -> tuple[float, float]:
        """Wait until opencode is idle (background work after a new session or prompt); returns the seconds waited
        and the CPU seconds it used meanwhile."""
        start, cpu_start = time.perf_counter(), self.cpu_seconds()
        while True:
            before = self.cpu_seconds()
            time.sleep(0.5)
            if self.cpu_seconds() - before < QUIET_CPU_SECONDS:
                return time.perf_counter() - start, self.cpu_seconds() - cpu_start
            if time.perf_counter() - start > SETTLE_TIMEOUT:
                raise TimeoutError(f"opencode still busy after {SETTLE_TIMEOUT:g}s")

    def rss_mb(self) -> float:
        """Resident memory of opencode and its children, summed."""
        return sum(p.memory_info().rss for p in (self.process, *self.process.children(recursive=True))) / 2**20


def bench_chats(api: Api, agent: Agent, raw_bare: Path, scratch: Path, reps: int, with_prompt: bool) -> Runs:
    """Ready sessions (worktree, session, and the prompt when `with_prompt`) through the API versus raw, opencode
    idle before each."""
    runs = Runs()
    body = {"repo": REPO, "prompt": PROMPT} if with_prompt else {"repo": REPO}
    for i in range(reps):
        agent.settle()
        start = time.perf_counter()
        job = api.wait(api.submit("POST", "/admin/chats", body))
        runs.api.append(time.perf_counter() - start)
        runs.in_job.append(in_job_seconds(job))
        chat = job["result"]
        if chat["repo_action"] != "up to date" or chat["prompt_sent"] != with_prompt:
            raise RuntimeError(f"unexpected chat: {chat}")

        agent.settle()
        branch = f"x{'p' if with_prompt else ''}{i}"
        path = scratch / branch
        runs.timed("git worktree add", git, "-C", str(raw_bare), "worktree", "add", "-b", branch, str(path), "main")
        session = runs.timed("POST /session", agent.call, "POST", "/session", path, {"title": body.get("prompt", REPO)})
        if with_prompt:
            runs.timed(
                "POST prompt_async", agent.call, "POST", f"/session/{session['id']}/prompt_async", path, PROMPT_BODY
            )
            agent.abort_prompted(chat["session_id"], chat["path"])
            agent.abort_prompted(session["id"], path)
    return runs


def run(args: argparse.Namespace, tmp: Path) -> None:
    """The whole benchmark inside `tmp`, then its figures."""
    origin_root, scratch = tmp / "origin", tmp / "scratch"
    origin_root.mkdir()
    scratch.mkdir()
    origin = make_origin(origin_root, REPO, args.files, args.commits)
    raw_bare = scratch / "raw.git"
    git("clone", "-q", "--bare", f"file://{origin}", str(raw_bare))

    with (
        running_opencode(tmp / "opencode") as server,
        running_stack(tmp, f"file://{origin_root}/", OPENCODE_URL=server.url) as stack,
    ):
        agent = Agent(server)
        version = agent.call("GET", "/global/health")["version"]
        stack.api.wait(stack.api.submit("POST", "/admin/repos/clone", {"repo": REPO}))
        agent.settle()
        rss = {"fresh": agent.rss_mb()}

        # The first session of a fresh opencode home sets opencode up (once per home: on the volume in production).
        git("-C", str(raw_bare), "worktree", "add", "-b", "warm-up", str(scratch / "warm-up"), "main")
        start = time.perf_counter()
        agent.call("POST", "/session", scratch / "warm-up", {"title": "warm-up"})
        first_ms = (time.perf_counter() - start) * 1000
        busy_s, busy_cpu = agent.settle()

        bare = bench_chats(stack.api, agent, raw_bare, scratch, args.reps, with_prompt=False)
        agent.settle()
        rss[f"+{2 * args.reps + 1} sessions"] = agent.rss_mb()
        prompted = bench_chats(stack.api, agent, raw_bare, scratch, args.reps, with_prompt=True)
        agent.settle()
        rss[f"+{2 * args.reps} prompted (aborted)"] = agent.rss_mb()
        listed = len(stack.api.request("GET", "/admin/chats")[1]["chats"])
        listing = stack.api.latency("/admin/chats", 30)

    print(
        f"\nmecodes chat benchmark: {args.files} files, {args.commits} commits, opencode {version} with no LLM "
        f"reachable; medians of {args.reps} reps, opencode idle before each"
    )
    print_table_header("raw ms")
    for name, runs in (("ready session, no prompt", bare), ("ready session + prompt", prompted)):
        print_table_row(name, median_ms(runs.api), median_ms(runs.in_job), median_ms(runs.raw_total()))
    parts = ", ".join(f"{step} {median_ms(seconds):.1f}" for step, seconds in prompted.raw.items())
    print(f"{'raw parts ms':<28}{parts}")
    print(
        f"{'first session, fresh home':<28}{first_ms:.1f} ms, then opencode busy {busy_s:.1f} s ({busy_cpu:.1f} CPU s)"
    )
    print(f"{'GET /admin/chats':<28}{listed} chats: {latency_text(listing)}")
    print(f"{'RSS MB: opencode, idle':<28}{', '.join(f'{when} {mb:.1f}' for when, mb in rss.items())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_origin_options(parser, files=3000)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each timing, median shown (default 5)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(args, tmp)


if __name__ == "__main__":
    main()
