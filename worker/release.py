"""Give idle agents' memory back to a 1 GB machine.

opencode keeps an in-memory instance per directory (per chat), and after a reply it holds on to it: ten answered
chats took opencode from 320 MB to about 1,000 MB RSS, and disposing their instances brought it back to about
510 MB (measured with opencode 1.18.33). A disposed instance is rebuilt, cheaply, by the next request for its
directory; the sessions and their messages are on disk and stay.

A directory is released once its sessions have been quiet for the idle limit and none of them is busy, and only
once per change: Redis remembers the newest session update each release saw, so a chat left open on a phone
(which rebuilds the instance when its event stream reconnects) is not released over and over.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from redis import Redis

from sidecar.opencode import IDLE, Opencode, OpencodeUnavailable

RELEASED_KEY = "mecodes:agents:released"  # directory -> the newest session update (ms) when last released


def release_idle_instances(opencode: Opencode, redis: Redis, idle_seconds: float) -> dict[str, Any]:
    try:
        sessions = opencode.sessions()
    except OpencodeUnavailable as down:  # nothing held to give back; and no failed run every few minutes
        return {"skipped": str(down), "released": [], "busy": []}
    newest: dict[str, int] = defaultdict(int)
    for session in sessions:
        updated = (session.get("time") or {}).get("updated")
        if session.get("directory") and isinstance(updated, int):
            newest[session["directory"]] = max(newest[session["directory"]], updated)
    released_at = {k.decode(): int(v) for k, v in redis.hgetall(RELEASED_KEY).items()}
    if gone := set(released_at) - set(newest):  # chats deleted since
        redis.hdel(RELEASED_KEY, *gone)
    quiet_since = (time.time() - idle_seconds) * 1000
    candidates = sorted(d for d, t in newest.items() if t > released_at.get(d, 0) and t <= quiet_since)
    released, busy = [], []
    for directory in candidates:
        if any(status != IDLE for status in opencode.statuses(directory).values()):
            busy.append(directory)
            continue
        opencode.dispose(directory)
        redis.hset(RELEASED_KEY, directory, newest[directory])
        released.append(directory)
    return {"skipped": None, "released": released, "busy": busy, "unchanged_or_recent": len(newest) - len(candidates)}
