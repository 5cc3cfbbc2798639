"""Give idle agents' memory back to a 1 GB machine.

opencode keeps an in-memory instance per directory (per chat), and after a reply it holds on to it: ten answered
chats took opencode from 320 MB to about 1,000 MB RSS, and disposing their instances brought it back to about
510 MB (measured with opencode 1.18.33). A disposed instance is rebuilt, cheaply, by the next request for its
directory; the sessions and their messages are on disk and stay. What disposing cannot give back (opencode's
heap keeps it), a restart of opencode does, once every chat is idle (domain.memory_manager).

A directory is released once its sessions have been quiet for the idle limit and none of them is busy, and only
once per change (domain.agent_instances), so a chat left open on a phone (which rebuilds the instance when its
event stream reconnects) is not released over and over.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from domain.agent_instances import Instances, by_directory, newest_updates
from domain.config import Settings
from domain.memory_manager import admits_a_chat, restart_agent_if_idle
from domain.opencode import Opencode, OpencodeUnavailable


def release_idle_instances(opencode: Opencode, redis: Redis, idle_seconds: float) -> dict[str, Any]:
    try:
        sessions = opencode.sessions()
    except OpencodeUnavailable as down:  # nothing held to give back; and no failed run every few minutes
        return {"skipped": str(down), "released": [], "busy": []}
    instances = Instances(opencode, redis)
    newest = newest_updates(sessions)
    released_at = instances.released_at()
    if gone := set(released_at) - set(newest):  # chats deleted since
        instances.forget(gone)
    quiet_since = (time.time() - idle_seconds) * 1000
    candidates = sorted(d for d, t in newest.items() if t > released_at.get(d, 0) and t <= quiet_since)
    grouped = by_directory(sessions)
    released, busy = [], []
    for directory in candidates:
        if opencode.statuses(directory):
            busy.append(directory)
            continue
        instances.release(directory, grouped[directory], newest[directory])
        released.append(directory)
    return {"skipped": None, "released": released, "busy": busy, "unchanged_or_recent": len(newest) - len(candidates)}


def give_memory_back(opencode: Opencode, redis: Redis, settings: Settings) -> dict[str, Any]:
    """Release idle chats' instances, then restart opencode if it still holds too much while all is idle: after
    MECODES_AGENT_RESTART_QUIET seconds without a change, or at once when there is no room for another chat
    (opencode keeps growing for a while after a reply; left alone, the OOM killer would take it)."""
    outcome = release_idle_instances(opencode, redis, settings.agent_idle_minutes * 60)
    if outcome["skipped"]:
        return outcome
    quiet = 0 if not admits_a_chat(settings)[0] else settings.agent_restart_quiet
    return {**outcome, "restart": restart_agent_if_idle(opencode, redis, settings, quiet)}
