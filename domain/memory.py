"""How much memory the stack has, uses and has left, read from the kernel.

The limit is the memory cgroup's (a container's, Fly's VM's) when it has one, else the machine's RAM, unless
MECODES_MEMORY_LIMIT_MB says otherwise. "Used" counts what cannot be dropped at once: anonymous memory, shared
memory and mapped files (the binaries that run); the page cache of files merely read (a checkout, say) is
reclaimable and left out, so a fresh clone does not make the box look full. Both cgroup v1 and v2 are read.
Per process, PSS (each shared page split between its users) from /proc/PID/smaps_rollup: RSS counts shared
pages again in every process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a huge number (0x7FFFFFFFFFFFF000)


@dataclass(frozen=True)
class Usage:
    limit_bytes: int
    used_bytes: int
    source: str  # "cgroup v1", "cgroup v2", "machine" or "MECODES_MEMORY_LIMIT_MB"

    @property
    def headroom_bytes(self) -> int:
        return max(self.limit_bytes - self.used_bytes, 0)


def _read_stat(path: Path) -> dict[str, int]:
    """`key value` lines (memory.stat, /proc/vmstat) or `Key:   value kB` lines (/proc/meminfo), as numbers."""
    values = {}
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].isdigit():
            values[words[0].rstrip(":")] = int(words[1])
    return values


def _own_cgroup(version: int) -> Path | None:
    """This process's memory cgroup folder, when the machine has one we can read."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        wanted = controllers == "" if version == 2 else "memory" in controllers.split(",")
        if not wanted:
            continue
        base = CGROUP_ROOT if version == 2 else CGROUP_ROOT / "memory"
        folder = base / path.lstrip("/")
        marker = "memory.max" if version == 2 else "memory.limit_in_bytes"
        if (folder / marker).exists():
            return folder
        if (base / marker).exists() or (version == 2 and (base / "memory.stat").exists()):
            return base  # inside a cgroup namespace (a container) the path is relative to what it sees
    return None


def cgroup_figures(folder: Path, version: int) -> tuple[int, int]:
    """(limit, used) of a memory cgroup's folder: the tightest limit of it and the groups above it (UNLIMITED
    without one), and what it uses that cannot be dropped at once."""
    stat = _read_stat(folder / "memory.stat")
    if version == 1:
        used = stat.get("total_rss", 0) + stat.get("total_shmem", 0) + stat.get("total_mapped_file", 0)
        own = int((folder / "memory.limit_in_bytes").read_text())
        return min(own, stat.get("hierarchical_memory_limit", UNLIMITED)), used
    used = stat.get("anon", 0) + stat.get("shmem", 0) + stat.get("file_mapped", 0)
    limit = UNLIMITED
    for group in (folder, *folder.parents):
        if not group.is_relative_to(CGROUP_ROOT) or not (group / "memory.max").exists():
            break
        raw = (group / "memory.max").read_text().strip()
        limit = min(limit, int(raw)) if raw != "max" else limit
    return limit, used


def _cgroup_usage() -> tuple[int, int, str] | None:
    """(limit, used, source) from this process's memory cgroup, or None without a limit."""
    for version in (2, 1):
        folder = _own_cgroup(version)
        if folder is None or not (folder / "memory.stat").exists():
            continue
        try:
            limit, used = cgroup_figures(folder, version)
        except (OSError, ValueError):
            return None
        return (limit, used, f"cgroup v{version}") if limit < UNLIMITED else None
    return None


def _meminfo() -> dict[str, int]:
    return {key: kib * 1024 for key, kib in _read_stat(Path("/proc/meminfo")).items()}


def usage(limit_mb: int = 0) -> Usage:
    """The memory the stack may use, and uses. `limit_mb` (MECODES_MEMORY_LIMIT_MB) overrides the limit."""
    meminfo = _meminfo()
    machine_total = meminfo["MemTotal"]
    machine_used = machine_total - meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    cgroup = _cgroup_usage()
    if cgroup is not None and cgroup[0] < machine_total:
        limit, used, source = cgroup
    else:
        limit, used, source = machine_total, machine_used, "machine"
    if limit_mb:
        limit, source = limit_mb * MB, "MECODES_MEMORY_LIMIT_MB"
    return Usage(limit, used, source)


def pss_bytes(pid: int) -> int | None:
    """The process's proportional set size, or None when it is gone or not ours to read."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def total_pss(pids: Iterable[int]) -> int:
    return sum(p for p in map(pss_bytes, pids) if p)


def oom_kills() -> int:
    """How many processes the kernel's OOM killer has ended since boot (any cgroup)."""
    try:
        return _read_stat(Path("/proc/vmstat")).get("oom_kill", 0)
    except OSError:
        return 0


def oom_score_adj(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/oom_score_adj").read_text())
    except (OSError, ValueError):
        return None


def set_own_oom_score_adj(value: int) -> None:
    """Make this process a likelier (higher) or less likely OOM victim; lowering needs root, so it may not take."""
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text(str(value))
