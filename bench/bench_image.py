"""Benchmark of the container image: its size (and what it adds to its base), the build time cold and after a
code-only change, the time from `docker run` to /admin/health 200 (empty volume, then a restart on it), the memory
of the idle container under `--memory 1g` as the stack itself reports it (its memory cgroup's use without page
cache, each service's PSS), and how long `docker stop` takes.

Needs a running dockerd and the base image: the Dockerfile's when here, else scripts/test-image's local Debian
bookworm (`--base`). Builds a copy of the build context (what .dockerignore lets in) in a temporary folder, so the
code-only change (a comment appended to domain/__init__.py) never touches the repo; the container runs as
tests/support/container.py runs it (as Fly would). Run from the repo root, as root:
`.venv/bin/python bench/bench_image.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from stack import ROOT, bench_folder

sys.path.insert(0, str(ROOT))  # tests, imported below
from tests.support.container import docker, run_container

MB = 1e6  # docker's unit for image sizes
MIB = 2**20


def build_context(into: Path) -> Path:
    """The files the Dockerfile may copy (the `!path` lines of .dockerignore), with both files themselves."""
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for name in ["Dockerfile", ".dockerignore", *(line[1:] for line in ignore if line.startswith("!"))]:
        source, target = ROOT / name, into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return into


def build(context: Path, base: str, tag: str, *extra: str) -> float:
    started = time.perf_counter()
    command = ["docker", "build", "--quiet", "--network", "host", "--build-arg", f"BASE={base}", "--tag", tag]
    subprocess.run([*command, *extra, str(context)], check=True, capture_output=True)
    return time.perf_counter() - started


def image_size(name: str) -> float:
    return int(docker("image", "inspect", "-f", "{{.Size}}", name)) / MB


def default_base() -> str:
    dockerfile_base = next(
        line.split("=", 1)[1] for line in (ROOT / "Dockerfile").open() if line.startswith("ARG BASE=")
    )
    found = subprocess.run(["docker", "image", "inspect", dockerfile_base], capture_output=True).returncode == 0
    return dockerfile_base if found else "mecodes-test-base:bookworm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", default=None, help="base image (default: the Dockerfile's if here, else the local one)"
    )
    parser.add_argument("--tag", default="mecodes:bench", help="the image built (removed at the end)")
    parser.add_argument("--idle", type=float, default=20, help="seconds the container stays idle before memory is read")
    args = parser.parse_args()
    base = args.base or default_base()
    with bench_folder() as tmp, contextlib.ExitStack() as cleanup:
        cleanup.callback(subprocess.run, ["docker", "rmi", "--force", args.tag], capture_output=True, check=False)
        context = build_context(tmp / "context")
        cold = build(context, base, args.tag, "--no-cache")
        with (context / "domain" / "__init__.py").open("a") as changed:
            changed.write("# a code-only change, made by bench/bench_image.py\n")
        code_only = build(context, base, args.tag)
        size, base_size = image_size(args.tag), image_size(base)
        print(f"\nmecodes image benchmark on {base}")
        print(f"{'image size':<36}{size:>7.0f} MB  ({base_size:.0f} MB base + {size - base_size:.0f} MB of mecodes)")
        print(f"{'build, cold (--no-cache)':<36}{cold:>7.1f} s")
        print(f"{'build after a code-only change':<36}{code_only:>7.1f} s")

        first = run_container(args.tag, tmp / "vol", tmp / "first.log", {})
        cleanup.callback(first.remove)
        print(f"{'docker run to /admin/health 200':<36}{first.ready_after:>7.1f} s  (empty volume)")
        print(f"{'  CPU time the start took':<36}{first.ready_cpu:>7.1f} s")
        time.sleep(args.idle)  # let start-up work settle before reading memory
        status, memory = first.request("GET", "/admin/memory")
        assert status == 200, memory
        print(f"memory once idle ({args.idle:.0f} s), as /admin/memory reports it:")
        print(f"  {'limit':<34}{memory['limit_bytes'] / MIB:>7.0f} MiB  ({memory['source']})")
        print(f"  {'used (page cache left out)':<34}{memory['used_bytes'] / MIB:>7.0f} MiB")
        for service in memory["services"]:
            print(f"  {service['name'] + ' PSS':<34}{(service['pss_bytes'] or 0) / MIB:>7.0f} MiB")
        total = sum(service["pss_bytes"] or 0 for service in memory["services"])
        print(f"  {'PSS of all services':<34}{total / MIB:>7.0f} MiB")
        stopped, code = first.stop()
        print(f"{'docker stop':<36}{stopped:>7.1f} s  (exit code {code})")

        second = run_container(args.tag, tmp / "vol", tmp / "second.log", {})
        cleanup.callback(second.remove)
        print(f"{'docker run to /admin/health 200':<36}{second.ready_after:>7.1f} s  (restart on that volume)")
        print(f"{'  CPU time the start took':<36}{second.ready_cpu:>7.1f} s")
        second.stop()


if __name__ == "__main__":
    main()
