"""A memory cgroup of a given size, v1 or v2 (whichever the machine has), made below this process's own cgroup:
the 1 GB VM's limit, here. Needs root and a writable memory controller; `available()` says why not."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from domain.memory import cgroup_figures

ROOT = Path("/sys/fs/cgroup")


def _own(version: int) -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if version == 2 and controllers == "":
            folder = ROOT / path.lstrip("/")
            return folder if (folder / "cgroup.controllers").exists() else None
        if version == 1 and "memory" in controllers.split(","):
            folder = ROOT / "memory" / path.lstrip("/")
            return folder if (folder / "memory.limit_in_bytes").exists() else None
    return None


def available() -> str | None:
    """None when a memory cgroup can be made here, else why not."""
    if os.geteuid() != 0:
        return "making a memory cgroup needs root"
    if _own(1) is None and _own(2) is None:
        return "no writable memory cgroup controller (v1 or v2) on this machine"
    return None


class MemoryCgroup:
    def __init__(self, limit_bytes: int):
        v1 = _own(1)
        self.version = 1 if v1 is not None else 2
        parent = v1 if v1 is not None else _own(2)
        assert parent is not None, available()
        self.path = parent / f"mecodes-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        if self.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):  # no swap accounting: there is no swap to limit either
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        else:
            (self.path / "memory.max").write_text(str(limit_bytes))
            (self.path / "memory.swap.max").write_text("0")

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        return [int(p) for p in self.procs_file.read_text().split()]

    def used_bytes(self) -> int:
        """What the group uses that cannot be dropped at once (page cache left out), as the sidecar counts it."""
        return cgroup_figures(self.path, self.version)[1]

    def peak_bytes(self) -> int:
        """The group's peak as the kernel counts it, page cache included."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return int((self.path / name).read_text())

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """Kill what is left inside, then remove the group."""
        deadline = time.monotonic() + 10
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.path.rmdir()


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[MemoryCgroup]:
    group = MemoryCgroup(limit_bytes)
    try:
        yield group
    finally:
        group.remove()


def command_in(group: MemoryCgroup, argv: list[str]) -> list[str]:
    """`argv` run inside the group: a shell joins it, then becomes the command (same pid)."""
    return ["sh", "-c", f'echo $$ > "{group.procs_file}" && exec "$@"', "in-cgroup", *argv]
