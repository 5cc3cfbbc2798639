"""Benchmark of asking opencode what a chat can be started with (`domain/agent_options.py`): its time and what it
costs opencode's memory, and what disposing of the instance asked gives back.

Starts `opencode serve` whose model is the tests' stand-in (as `bench_memory.py` does), then asks for the models and
primary agents the way `GET /admin/agent-options` does on a cache miss (`read_options` in a folder of no chat's, then
a dispose), `--reps` times. Prints the time of the first ask and of the later ones, against opencode's raw
`GET /config/providers` on an instance already loaded, and opencode's RSS (with its children) fresh, right after the
first ask and settled after its dispose. Run from the repo root: `.venv/bin/python bench/bench_agent_options.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench_chat import Agent
from bench_memory import settled_rss
from stack import ROOT, bench_folder, running_opencode

sys.path.insert(0, str(ROOT))  # domain and tests, imported below
from domain.agent_options import ASK_TIMEOUT, read_options
from domain.opencode import Opencode
from tests.support.fake_llm import FakeLLM, write_opencode_config


def run(reps: int, tmp: Path) -> None:
    folder = tmp / "asked"
    folder.mkdir()
    with FakeLLM() as llm:
        write_opencode_config(tmp / "opencode" / "config", llm.url)
        with running_opencode(tmp / "opencode") as server:
            agent, client = Agent(server), Opencode(server.url, timeout=ASK_TIMEOUT)
            agent.settle()
            rss = {"fresh": agent.rss_mb()}
            asks = []
            for rep in range(reps):
                start = time.perf_counter()
                options = read_options(client, str(folder))
                asks.append(time.perf_counter() - start)
                if rep == 0:
                    rss["right after the first ask"] = agent.rss_mb()
                    raw = []
                    for _ in range(5):
                        start = time.perf_counter()
                        client.providers(str(folder))
                        raw.append(time.perf_counter() - start)
                client.dispose(str(folder))
                if rep == 0:
                    rss["first ask disposed, settled"] = settled_rss(agent)
            rss[f"after {reps} asks, each disposed, settled"] = settled_rss(agent)
    print(f"\nmecodes agent-options benchmark: {len(options['models'])} models, {len(options['agents'])} agents")
    print(f"{'first ask (a new instance loads its providers)':<52}{asks[0] * 1000:8.0f} ms")
    if reps > 1:
        print(f"{'later asks, median (each on a new instance)':<52}{statistics.median(asks[1:]) * 1000:8.0f} ms")
    print(f"{'raw GET /config/providers, loaded instance, median':<52}{statistics.median(raw) * 1000:8.1f} ms")
    for when, mb in rss.items():
        print(f"{'opencode RSS MB: ' + when:<52}{mb:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="asks, each on a new instance (default 5)")
    args = parser.parse_args()
    with bench_folder() as tmp:
        run(args.reps, tmp)


if __name__ == "__main__":
    main()
