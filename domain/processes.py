"""Stray processes: finding them and killing them, and never anything else.

A stray is a process of our user that is not part of the stack and is either
- running in a worktree (its cwd is inside the worktrees folder), whenever it began and whoever its parent is:
  an agent's command, running or left over, or anything else started there; or
- an orphan: re-parented to PID 1 when its own parent died (an agent's command that outlived its shell or
  opencode) and started after the stack did.
The stack is the process manager (MECODES_STACK_PID; by default the sidecar's top-most ancestor below PID 1)
and everything below it that runs outside the worktrees: Redis, gunicorn and its workers, the RQ worker and its
children, Caddy, opencode. PID 1, the sidecar, its ancestors and the stack's services are never killed.

A stack that died without stopping its services (SIGKILL, a crash) can leave agents' commands running in its
worktrees; `leftovers` finds them at the next start (bin/procman ends a service's processes when it stops it).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from domain.layout import Layout

MAX_PID = 4_194_304  # the kernel's upper bound for pid_max


class Refused(Exception):
    """The pid may not be killed through the API; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


ORPHAN, IN_WORKTREE = "orphan", "in-worktree"


@dataclass(frozen=True)
class Stray:
    pid: int
    ppid: int
    user: str | None
    cmdline: str
    cwd: str | None
    worktree: str | None
    reason: str  # ORPHAN (its parent is PID 1) or IN_WORKTREE
    age_seconds: float
    cpu_seconds: float
    rss_bytes: int


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} ({proc.name()})"
    except psutil.Error:
        return str(proc.pid)


def _dead(proc: psutil.Process) -> bool:
    """Exited, or a zombie waiting for PID 1 to reap it (which can take a while)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until_dead(procs: set[psutil.Process], timeout: float) -> tuple[set[psutil.Process], set[psutil.Process]]:
    deadline = time.monotonic() + timeout
    alive = set(procs)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if not _dead(p)}
        if alive:
            time.sleep(0.05)
    return procs - alive, alive


def terminate(targets: set[psutil.Process], grace: float) -> dict[str, list[int]]:
    """SIGTERM every target, SIGKILL those still alive after `grace`; which pids ended how."""
    for target in targets:
        try:
            target.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue
    gone, alive = _wait_until_dead(targets, grace)
    for target in alive:
        try:
            target.kill()
        except psutil.NoSuchProcess:
            continue
    killed, survivors = _wait_until_dead(alive, 2)
    return {
        "terminated": sorted(p.pid for p in gone),
        "killed": sorted(p.pid for p in killed),
        "survivors": sorted(p.pid for p in survivors),
    }


def _cwd(proc: psutil.Process) -> str | None:
    try:
        return proc.cwd()
    except psutil.AccessDenied:
        return None


def worktree_of(layout: Layout, cwd: str | None) -> str | None:
    """The worktree folder `cwd` is in, or None."""
    if not cwd:
        return None
    path, root = Path(cwd), layout.worktrees_dir
    return path.relative_to(root).parts[0] if path.is_relative_to(root) and path != root else None


def leftovers(layout: Layout) -> list[psutil.Process]:
    """Processes a stack of this data folder left running in its worktrees: ours, with a cwd in a worktree, and
    MECODES_DATA_DIR naming this folder in their environment (every process of a stack inherits it; a person's own
    shell open in a worktree does not, and is left alone). Meant for start-up, before any service runs."""
    found, uid, me = [], os.getuid(), psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents())}
    for proc in psutil.process_iter():
        try:
            if proc.pid in mine or proc.uids().real != uid or not worktree_of(layout, _cwd(proc)):
                continue
            data_dir = proc.environ().get("MECODES_DATA_DIR")
            if data_dir and Path(data_dir).resolve() == layout.root.resolve():
                found.append(proc)
        except psutil.Error:
            continue  # gone or unreadable meanwhile
    return found


class ProcessGuard:
    """Decides, for any pid, whether it is a stray we may kill, and why not otherwise."""

    def __init__(self, layout: Layout, stack_pid: int | None):
        self.layout = layout
        me = psutil.Process()
        self.own_chain = {me.pid, *(p.pid for p in me.parents())}
        below_init = [p for p in [me, *me.parents()] if p.pid != 1]
        self.stack = psutil.Process(stack_pid) if stack_pid else below_init[-1]
        self.stack_started = self.stack.create_time()
        self.uid = os.getuid()

    def _protected(self, proc: psutil.Process) -> str | None:
        """Why `proc` must never be killed (init, the sidecar's own line, the stack's services and what they run
        outside the worktrees), or None."""
        if proc.pid == 1:
            return "PID 1 (the container's init) is never killed"
        if proc.pid in self.own_chain:
            return f"{_describe(proc)} is the sidecar or one of its parents"
        if proc.pid == self.stack.pid or proc.ppid() == self.stack.pid:
            return f"{_describe(proc)} is part of the stack (the process manager or one of its services)"
        below_stack = self.stack.pid in {p.pid for p in proc.parents()}
        if below_stack and not worktree_of(self.layout, _cwd(proc)):
            return f"{_describe(proc)} is part of the stack (a child of a service, outside the worktrees)"
        return None

    def refusal(self, proc: psutil.Process) -> Refused | None:
        """None when `proc` is a stray we may kill (in a worktree, or an orphan); else why not."""
        with proc.oneshot():
            if reason := self._protected(proc):
                return Refused(403, reason)
            if proc.uids().real != self.uid:
                return Refused(403, f"{_describe(proc)} belongs to another user")
            if worktree_of(self.layout, _cwd(proc)):
                return None
            if proc.ppid() != 1:
                parent = psutil.Process(proc.ppid())
                return Refused(
                    409, f"{_describe(proc)} is not an orphan (its parent is {_describe(parent)}) nor in a worktree"
                )
            if proc.create_time() < self.stack_started:
                return Refused(403, f"{_describe(proc)} started before the stack, so it is not one of its orphans")
        return None

    def strays(self) -> list[Stray]:
        found = []
        for proc in psutil.process_iter():
            try:
                if self.refusal(proc) is None:
                    found.append(self._stray(proc))
            except psutil.Error:
                continue  # gone or unreadable meanwhile
        return sorted(found, key=lambda o: o.pid)

    def _stray(self, proc: psutil.Process) -> Stray:
        with proc.oneshot():
            cwd = _cwd(proc)
            cpu = proc.cpu_times()
            return Stray(
                pid=proc.pid,
                ppid=proc.ppid(),
                user=proc.username(),
                cmdline=" ".join(proc.cmdline()) or proc.name(),
                cwd=cwd,
                worktree=worktree_of(self.layout, cwd),
                reason=ORPHAN if proc.ppid() == 1 else IN_WORKTREE,
                age_seconds=round(time.time() - proc.create_time(), 1),
                cpu_seconds=round(cpu.user + cpu.system, 2),
                rss_bytes=proc.memory_info().rss,
            )

    def kill(self, pid: int, grace: float) -> dict[str, object]:
        """SIGTERM the stray, its descendants and its process group; SIGKILL what is left after `grace`."""
        try:
            proc = psutil.Process(pid)
            refused = self.refusal(proc)
        except psutil.NoSuchProcess:
            raise Refused(404, f"no process {pid}") from None
        if refused:
            raise refused
        return {"pid": pid, **terminate({proc, *proc.children(recursive=True), *self._group_of(proc)}, grace)}

    def _group_of(self, proc: psutil.Process) -> list[psutil.Process]:
        """The rest of its process group, unless that group also holds something we must not kill."""
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            return []
        members = []
        for other in psutil.process_iter():
            try:
                if other.pid != proc.pid and os.getpgid(other.pid) == pgid:
                    if self._protected(other):
                        return []
                    members.append(other)
            except (ProcessLookupError, psutil.Error):
                continue
        return members


def alive_here(hostname: str | None, pid: int | None) -> bool:
    """Whether a process recorded by its host and pid (an RQ worker, say) still runs. RQ keeps a dead worker's
    record until its TTL runs out (minutes), so on this host its process is checked; one recorded on another host
    is taken as alive (its TTL decides there)."""
    if pid is None:
        return False
    if hostname != socket.gethostname():
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
