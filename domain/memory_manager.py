"""The stack's memory rules on a 1 GB machine, and the view of its memory that the API shows.

- opencode gives its memory back: disposing a chat's instance frees little that the kernel sees (opencode's heap
  keeps it), a restart does (≈ 660 → 330 MB measured), and sessions live in SQLite, so they survive it. When
  opencode's PSS is above MECODES_AGENT_RESTART_MB, no chat is busy and none changed for
  MECODES_AGENT_RESTART_QUIET seconds, procman restarts it in place, between turns.
- Admission: a new chat's agent starts only while the headroom (limit minus used, see domain.memory) is at
  least MECODES_CHAT_MEMORY_MB; until then the chat waits as a queued job.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
from redis import Redis

from domain import memory, procman
from domain.agent_instances import Instances, newest_updates
from domain.config import Settings
from domain.interruptions import Restarts
from domain.opencode import Opencode

SETTLE_SECONDS = 3  # a prompt just sent shows as an update at once, but its session turns busy a moment later
RESTARTED_KEY = "mecodes:agents:restarted-at"  # the newest session update (ms) when opencode was last restarted


def agent_pid(settings: Settings) -> int | None:
    return procman.running_pid(procman.services(settings.run_dir).get(procman.AGENT) or {})


def agent_pss_mb(settings: Settings) -> float | None:
    pid = agent_pid(settings)
    pss = memory.pss_bytes(pid) if pid else None
    return round(pss / memory.MB, 1) if pss is not None else None


def restart_agent_if_idle(opencode: Opencode, redis: Redis, settings: Settings, quiet: float) -> dict[str, Any]:
    """Restart opencode when it holds more than MECODES_AGENT_RESTART_MB, no session is busy or finishing a turn
    (idle an instant before its reply's end is recorded; a turn known to be interrupted does not count) and none was
    updated in the last `quiet` seconds, and a session was updated since the last restart (else the restart
    would give nothing back: a limit below opencode's idle size must not restart it over and over). Says what
    it did, and why not when it did not."""
    limit = settings.agent_restart_mb
    pss = agent_pss_mb(settings)
    decision: dict[str, Any] = {"restarted": False, "pss_mb": pss, "limit_mb": limit}
    if not limit:
        return {**decision, "why": "MECODES_AGENT_RESTART_MB is 0: never restarted"}
    if pss is None:
        return {**decision, "why": "opencode's process is not known (the stack is not run by bin/procman)"}
    if pss <= limit:
        return {**decision, "why": f"opencode uses {pss:.0f} MB, not more than {limit} MB"}
    sessions = opencode.sessions()
    latest = max(newest_updates(sessions).values(), default=0)
    if latest <= int(redis.get(RESTARTED_KEY) or 0):
        return {**decision, "why": "no chat changed since opencode's last restart"}
    quiet = max(quiet, SETTLE_SECONDS)
    if time.time() - latest / 1000 < quiet:
        return {**decision, "why": f"a chat changed in the last {quiet:.0f} s"}
    instances = Instances(opencode, redis, Restarts.read(settings))
    agents = instances.look(sessions, outcomes_for={s["id"] for s in sessions})
    if busy := sorted(agents.status):
        return {**decision, "why": f"chats are working: {', '.join(busy)}"}
    if finishing := sorted(set(newest_updates(sessions)) - agents.idle):  # idle, its reply not yet recorded
        return {**decision, "why": f"chats are finishing a turn: {', '.join(finishing)}"}
    instances.release_all(sessions, agents)  # every instance ends with the restart
    if not procman.request_restart(settings.run_dir, settings.stack_pid, procman.AGENT):
        return {**decision, "why": "procman did not take the restart request"}
    redis.set(RESTARTED_KEY, latest)
    return {**decision, "restarted": True, "why": f"opencode used {pss:.0f} MB and every chat was idle"}


def admits_a_chat(settings: Settings) -> tuple[bool, memory.Usage]:
    """Whether there is headroom for one more chat's agent, and the figures it was judged on."""
    now = memory.usage(settings.memory_limit_mb)
    return now.headroom_bytes >= settings.chat_memory_mb * memory.MB, now


def waiting_text(now: memory.Usage, settings: Settings) -> str:
    return (
        f"waiting for memory: {now.headroom_bytes // memory.MB} MB free of {now.limit_bytes // memory.MB} MB,"
        f" a chat needs {settings.chat_memory_mb} MB"
    )


def _below(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def report(settings: Settings) -> dict[str, Any]:
    """Limit, use and headroom; each service's PSS (with its children, the agent's commands apart); the agent's
    commands one by one; how many processes the OOM killer has taken."""
    now = memory.usage(settings.memory_limit_mb)
    services, commands = [], []
    for name, service in procman.services(settings.run_dir).items():
        pid = procman.running_pid(service)
        below = _below(pid) if pid else []
        own = [pid, *(p.pid for p in below)] if pid and name != procman.AGENT else [pid] if pid else []
        services.append(
            {
                "name": name,
                "pid": pid,
                "state": service.get("state"),
                "restarts": service.get("restarts", 0),
                "last_exit": service.get("last_exit"),
                "pss_bytes": memory.total_pss(own) if own else None,
                "oom_score_adj": memory.oom_score_adj(pid) if pid else None,
            }
        )
        if name == procman.AGENT:
            for child in below:
                if (pss := memory.pss_bytes(child.pid)) is not None:
                    adj = memory.oom_score_adj(child.pid)
                    command = {"pid": child.pid, "command": _command(child), "pss_bytes": pss, "oom_score_adj": adj}
                    commands.append(command)
    return {
        "limit_bytes": now.limit_bytes,
        "used_bytes": now.used_bytes,
        "headroom_bytes": now.headroom_bytes,
        "source": now.source,
        "chat_reserve_bytes": settings.chat_memory_mb * memory.MB,
        "agent_restart_bytes": settings.agent_restart_mb * memory.MB,
        "services": services,
        "agent_commands": commands,
        "agent_commands_pss_bytes": sum(c["pss_bytes"] for c in commands),
        "oom_kills": memory.oom_kills(),
    }
