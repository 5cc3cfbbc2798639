"""Benchmark of the chat list, `GET /admin/chats` (the phone's home screen), at 10 and 50 chats on 3,000-file
worktrees, beside the same list computed the old way.

Starts its own redis-server, RQ worker and gunicorn sidecar (`stack.py`'s `running_stack`) and `opencode serve` whose
model is the tests' stand-in (`tests/support/fake_llm.py`, an echo on 127.0.0.1), all inside a temporary folder that
is removed at the end. Makes chats through the API (`--repos` origins, each chat a worktree, a session and one
answered prompt), waits until every chat is idle and has been listed twice (so it is remembered as quiet), then
times `--calls` lists through HTTP. The old way, as the list was computed before (issue 12), runs in this process on
the same data: `git status` and `git rev-list` in every worktree, opencode's status for every chat's folder and its
last reply for every idle chat, on every call (no HTTP or Flask, so it is timed a little in its favour); the raw
figure is opencode's own answer to the one call a list of quiet chats makes (`GET /experimental/session`). Also timed:
the first list after Redis forgot what it remembered (a restart without persistence), and the Redis memory of what
is remembered. Then `--waiting` of the chats ask a question (the stand-in's `ASK`) and wait on it, which makes them
busy and costs two calls each (`GET /question`, `GET /permission`): the list is timed again, and those calls alone.
Run from the repo root: `.venv/bin/python bench/bench_chat_list.py [--chats 10,50] [--waiting 10]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from redis import Redis
from stack import (
    ROOT,
    Api,
    add_origin_options,
    bench_folder,
    latency_text,
    make_origin,
    running_opencode,
    running_stack,
)

sys.path.insert(0, str(ROOT))  # the domain and the tests' stand-in model, imported below
from domain.agent_instances import IDLE_SEEN_KEY, SETTLE_SECONDS, SETTLED_KEY
from domain.config import load_settings
from domain.gitcmd import Git
from domain.inventory import all_worktrees, last_activity
from domain.layout import Layout
from domain.opencode import IDLE, Opencode
from domain.waiting import NEEDS_INPUT, waiting_in
from domain.work_states import KEY as WORK_STATES_KEY
from tests.support.fake_llm import FakeLLM, write_opencode_config

IN_PARALLEL = 4  # as the old list did


def old_way(layout: Layout, git: Git, opencode: Opencode) -> int:
    """The list as computed before: every worktree's state, every chat folder's status, every idle chat's last
    reply, on every call. Returns the number of sessions."""
    sessions = opencode.sessions()
    worktrees = all_worktrees(layout, git, with_state=True)
    linked = {w.opencode_session for w in worktrees if w.opencode_session}
    with ThreadPoolExecutor(IN_PARALLEL) as pool:
        status: dict[str, str] = {}
        for found in pool.map(opencode.statuses, sorted({s["directory"] for s in sessions})):
            status.update(found)
        idle = [s for s in sessions if s["id"] in linked and status.get(s["id"], IDLE) == IDLE]
        list(pool.map(lambda s: opencode.last_error(s["id"], s["directory"]), idle))
    for worktree in worktrees:
        last_activity(worktree.path)
    return len(sessions)


def make_chats(api: Api, repos: list[str], have: int, want: int) -> None:
    """Chats `have`..`want`, round-robin over `repos`, all submitted at once, each with an answered prompt."""
    jobs = [
        api.submit("POST", "/admin/chats", {"repo": repos[i % len(repos)], "prompt": f"Say hello {i}"})
        for i in range(have, want)
    ]
    for job in jobs:
        api.wait(job)


def wait_all_idle(api: Api, count: int) -> None:
    deadline = time.monotonic() + 300
    while True:
        chats = api.request("GET", "/admin/chats")[1]["chats"]
        if len(chats) == count and all(c["status"] == "idle" for c in chats):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("chats still busy after 300 s")
        time.sleep(1)


def make_wait(api: Api, opencode: Opencode, count: int) -> list[dict[str, Any]]:
    """`count` chats ask a question and wait on it; returns their sessions once the list says so."""
    question = {"question": "Go on?", "header": "Go on", "options": [{"label": "Yes", "description": "go on"}]}
    sessions = opencode.sessions()[:count]
    for session in sessions:
        opencode.prompt(session["id"], session["directory"], "ASK " + json.dumps({"questions": [question]}), None)
    deadline = time.monotonic() + 300
    while sum(c["status"] == NEEDS_INPUT for c in api.request("GET", "/admin/chats")[1]["chats"]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} chats waiting after 300 s")
        time.sleep(1)
    return sessions


def remembered(redis: Redis) -> tuple[int, int]:
    """(settled directories, remembered worktree states)."""
    return redis.hlen(SETTLED_KEY), redis.hlen(WORK_STATES_KEY)


def run(args: argparse.Namespace, tmp: Path) -> None:
    origin_root = tmp / "origin"
    origin_root.mkdir()
    repos = [f"bench/list{r}" for r in range(args.repos)]
    for repo in repos:
        make_origin(origin_root, repo, args.files, args.commits)
    targets = [int(n) for n in args.chats.split(",")]
    rows = []
    with FakeLLM() as llm:
        write_opencode_config(tmp / "opencode" / "config", llm.url)
        with (
            running_opencode(tmp / "opencode") as server,
            running_stack(
                tmp, f"file://{origin_root}/", OPENCODE_URL=server.url, MECODES_AGENT_RELEASE_INTERVAL="0"
            ) as stack,
        ):
            api, redis = stack.api, Redis.from_url(stack.redis_url)
            for repo in repos:
                api.wait(api.submit("POST", "/admin/repos/clone", {"repo": repo}))
            settings = replace(load_settings(), data_dir=stack.data)
            layout, git, opencode = Layout(stack.data), Git(settings), Opencode(server.url)
            have = 0
            for want in targets:
                make_chats(api, repos, have, want)
                have = want
                wait_all_idle(api, want)
                time.sleep(SETTLE_SECONDS + 0.5)
                api.request("GET", "/admin/chats")  # the second look: every chat is now remembered as quiet
                quiet = remembered(redis)
                new = api.latency("/admin/chats", args.calls)
                raw = []
                for _ in range(args.calls):  # the floor: opencode's own answer to the one call the list makes
                    start = time.perf_counter()
                    opencode.sessions()
                    raw.append(time.perf_counter() - start)
                old = []
                for _ in range(args.old_calls):
                    start = time.perf_counter()
                    old_way(layout, git, opencode)
                    old.append(time.perf_counter() - start)
                redis.delete(SETTLED_KEY, IDLE_SEEN_KEY, WORK_STATES_KEY)
                cold = api.latency("/admin/chats", 1)[0]
                memory = sum(redis.memory_usage(key) or 0 for key in (SETTLED_KEY, IDLE_SEEN_KEY, WORK_STATES_KEY))
                rows.append((want, new, raw, old, cold, quiet, memory))
            waiting = make_wait(api, opencode, args.waiting) if args.waiting else []
            if waiting:
                api.request("GET", "/admin/chats")  # what Redis forgot above is remembered again
                listed = api.latency("/admin/chats", args.calls)
                directories, calls = {s["directory"] for s in waiting}, []
                for _ in range(args.calls):
                    start = time.perf_counter()
                    waiting_in(opencode, directories, waiting)
                    calls.append(time.perf_counter() - start)

    print(
        f"\nmecodes chat list benchmark: {args.files} files per worktree, {args.repos} repos, chats idle and answered;"
        f" {args.calls} lists through HTTP, {args.old_calls} computed the old way in-process"
    )
    for want, new, raw, old, cold, quiet, memory in rows:
        new_p50, raw_p50, old_p50 = (sorted(times)[len(times) // 2] for times in (new, raw, old))
        print(f"{want:>3} chats  GET /admin/chats: {latency_text(new)}  ({new_p50 / raw_p50:.1f}x the raw p50)")
        print(f"{'':>11}raw, opencode's session list alone: {latency_text(raw)}")
        print(f"{'':>11}old way:          {latency_text(old)}  ({old_p50 / new_p50:.0f}x the new p50)")
        print(
            f"{'':>11}first list after Redis forgot: {cold * 1000:.0f} ms; remembered: {quiet[0]} settled folders,"
            f" {quiet[1]} worktree states, {memory / 1024:.1f} KiB in Redis"
        )
    if waiting:
        print(f"{rows[-1][0]:>3} chats, {len(waiting)} waiting on a question: GET /admin/chats: {latency_text(listed)}")
        print(f"{'':>11}their question and permission calls alone: {latency_text(calls)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_origin_options(parser, files=3000)
    parser.add_argument("--repos", type=int, default=5, help="origin repos the chats spread over (default 5)")
    parser.add_argument("--chats", default="10,50", help="chat counts to measure at, ascending (default 10,50)")
    parser.add_argument("--calls", type=int, default=50, help="lists timed through HTTP per count (default 50)")
    parser.add_argument("--old-calls", type=int, default=20, help="lists computed the old way per count (default 20)")
    parser.add_argument("--waiting", type=int, default=10, help="chats then made to wait on a question (default 10)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(args, tmp)


if __name__ == "__main__":
    main()
