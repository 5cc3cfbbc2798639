"""Benchmark of opencode's memory: what answered chats cost, and what giving idle agents' memory back returns.

Starts `opencode serve` (`stack.py`'s `running_opencode`) whose model is the tests' stand-in
(`tests/support/fake_llm.py`: an OpenAI-compatible endpoint on 127.0.0.1 that echoes), makes N chats (a git folder
of 300 files each, a session, one prompt, answered), waits until opencode is idle, then disposes each chat's
instance as the `release` job does (`domain/release.py`) and waits for opencode's memory to settle. Prints
opencode's RSS (with its children) at each point. Run from the repo root:
`.venv/bin/python bench/bench_memory.py [--chats N]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench_chat import Agent
from stack import ROOT, OpencodeServer, bench_folder, git, running_opencode

sys.path.insert(0, str(ROOT))  # sidecar and tests, imported below
from domain.opencode import Opencode
from tests.support.fake_llm import FakeLLM, write_opencode_config

SETTLE_SECONDS = 60  # opencode (Bun) returns freed memory some seconds after a dispose


def settled_rss(agent: Agent) -> float:
    """RSS once it stopped falling for 10 s (or after SETTLE_SECONDS)."""
    deadline, lowest, since = time.monotonic() + SETTLE_SECONDS, agent.rss_mb(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 10:
        time.sleep(1)
        if (now := agent.rss_mb()) < lowest - 5:
            lowest, since = now, time.monotonic()
    return agent.rss_mb()


def run(chats: int, tmp: Path) -> None:
    with FakeLLM() as llm:
        write_opencode_config(tmp / "opencode" / "config", llm.url)
        with running_opencode(tmp / "opencode") as server:
            measure(server, chats, tmp)


def measure(server: OpencodeServer, chats: int, tmp: Path) -> None:
    agent, client = Agent(server), Opencode(server.url)
    agent.settle()
    rss = {"fresh": agent.rss_mb()}
    folders = []
    for i in range(chats):
        folder = tmp / f"chat{i}"
        git("init", "-q", str(folder))
        for n in range(300):
            (folder / f"file{n}.txt").write_text(f"line {n}\n")
        session = client.create_session(str(folder), f"chat {i}", {})
        client.prompt(session["id"], str(folder), "Say hello", None)
        folders.append((str(folder), session["id"]))
    agent.settle()
    rss[f"{chats} answered chats, idle"] = settled_rss(agent)
    start = time.perf_counter()
    for folder, _ in folders:
        client.dispose(folder)
    dispose_ms = (time.perf_counter() - start) * 1000 / chats
    rss["after releasing them"] = settled_rss(agent)
    folder, session_id = folders[0]
    client.last_error(session_id, folder)  # a request for a released chat builds a fresh instance
    rss["after reading one again"] = settled_rss(agent)
    print(f"\nmecodes agent-memory benchmark: {chats} chats of 300 files, one answered prompt each (stand-in model)")
    for when, mb in rss.items():
        print(f"{'RSS MB: ' + when:<40}{mb:8.1f}")
    print(f"{'dispose, per chat':<40}{dispose_ms:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=10, help="answered chats (default 10)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(args.chats, tmp)


if __name__ == "__main__":
    main()
