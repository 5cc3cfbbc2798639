"""Which of opencode's per-directory instances are released, so that reading a chat's state does not wake it.

opencode keeps an instance per directory (per chat) and holds its memory until the instance is disposed. Any
request about that directory afterwards (its sessions' status, their messages, even `GET /session/{id}`) builds
the instance again. A directory counts as released while none of its sessions has been updated since it was
released: its sessions are then idle, and the reason each one's last reply failed (if it did) was remembered at
release, so the chat list and the periodic jobs answer for it without asking opencode.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from domain.opencode import Opencode

RELEASED_KEY = "mecodes:agents:released"  # directory -> the newest session update (ms) when last released
ERRORS_KEY = "mecodes:agents:released-errors"  # session id -> why its last reply failed, as of the release
CALLS_IN_PARALLEL = 4  # opencode answers per-directory and per-session questions concurrently


def newest_updates(sessions: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Directory → the newest update time (ms) of its sessions."""
    newest: dict[str, int] = defaultdict(int)
    for session in sessions:
        updated = (session.get("time") or {}).get("updated")
        if session.get("directory") and isinstance(updated, int):
            newest[session["directory"]] = max(newest[session["directory"]], updated)
    return dict(newest)


def by_directory(sessions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for session in sessions:
        if session.get("directory"):
            grouped[session["directory"]].append(session)
    return dict(grouped)


class Instances:
    def __init__(self, opencode: Opencode, redis: Redis):
        self.opencode = opencode
        self.redis = redis

    def released_at(self) -> dict[str, int]:
        """Directory → the newest session update it was released at; empty when Redis does not answer (then
        every directory is asked, as before any release)."""
        try:
            return {k.decode(): int(v) for k, v in self.redis.hgetall(RELEASED_KEY).items()}
        except RedisError:
            return {}

    def released(self, sessions: list[dict[str, Any]]) -> set[str]:
        """The directories of `sessions` that are released and untouched since."""
        released_at = self.released_at()
        return {d for d, t in newest_updates(sessions).items() if d in released_at and t <= released_at[d]}

    def statuses(self, sessions: list[dict[str, Any]], released: set[str] | None = None) -> dict[str, str]:
        """Session id → status (idle unless opencode says otherwise), asking only the live directories (those not
        in `released`, by default `self.released(sessions)`)."""
        released = self.released(sessions) if released is None else released
        live = {s["directory"] for s in sessions if s.get("directory")} - released
        found: dict[str, str] = {}
        with ThreadPoolExecutor(CALLS_IN_PARALLEL) as pool:
            for statuses in pool.map(self.opencode.statuses, sorted(live)):
                found.update(statuses)
        return found

    def remembered_errors(self) -> dict[str, str]:
        try:
            return {k.decode(): v.decode() for k, v in self.redis.hgetall(ERRORS_KEY).items()}
        except RedisError:
            return {}

    def release(self, directory: str, sessions: list[dict[str, Any]], newest: int) -> None:
        """Remember why each of the directory's sessions last failed, then dispose of its instance."""
        self._remember_errors(directory, sessions)
        self.opencode.dispose(directory)
        self.redis.hset(RELEASED_KEY, directory, newest)

    def release_all(self, sessions: list[dict[str, Any]]) -> None:
        """Before opencode restarts, which ends every instance: what `release` remembers, for every live one."""
        released, newest = self.released(sessions), newest_updates(sessions)
        for directory, its_sessions in by_directory(sessions).items():
            if directory not in released:
                self._remember_errors(directory, its_sessions)
                self.redis.hset(RELEASED_KEY, directory, newest[directory])

    def _remember_errors(self, directory: str, sessions: list[dict[str, Any]]) -> None:
        for session in sessions:
            if error := self.opencode.last_error(session["id"], directory):
                self.redis.hset(ERRORS_KEY, session["id"], error)
            else:
                self.redis.hdel(ERRORS_KEY, session["id"])

    def forget(self, directories: Iterable[str], session_ids: Iterable[str] = ()) -> None:
        """Drop what is remembered of deleted chats."""
        if directories := list(directories):
            self.redis.hdel(RELEASED_KEY, *directories)
        if session_ids := list(session_ids):
            self.redis.hdel(ERRORS_KEY, *session_ids)
