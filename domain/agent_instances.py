"""What is known of opencode's per-directory instances without asking: which are released (so that reading a
chat's state does not wake one) and which are settled (so that the chat list need not ask about them).

opencode keeps an instance per directory (per chat) and holds its memory until the instance is disposed. Any
request about that directory afterwards (its sessions' status, their messages, even `GET /session/{id}`) builds
the instance again. A directory counts as released while none of its sessions has been updated since it was
released: its sessions are then idle, and the reason each one's last reply failed (if it did) was remembered at
release, so the chat list and the periodic jobs answer for it without asking opencode.

The same holds for a live directory once it is settled: its sessions seen idle, with no reply still to come, twice,
SETTLE_SECONDS apart, with no update in between. A session only turns busy through a new prompt, which updates it,
so until then it is idle and nothing needs asking. (Twice, because opencode reports a session idle an instant
before it records why its reply failed, without a new update time.)
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from domain.opencode import LastReply, Opencode

RELEASED_KEY = "mecodes:agents:released"  # directory -> the newest session update (ms) when last released
SETTLED_KEY = "mecodes:agents:settled"  # directory -> the newest session update (ms) when it was seen settled
IDLE_SEEN_KEY = "mecodes:agents:idle-seen"  # directory -> "<newest update (ms)> <when first seen idle (s)>"
ERRORS_KEY = "mecodes:agents:released-errors"  # session id -> why its last reply failed, as of release or settling
SETTLE_SECONDS = 3.0
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


@dataclass(frozen=True)
class AgentStates:
    """What a look at opencode found: each session's status (idle unless said otherwise), why a session's last reply
    failed (for the sessions asked about), and the directories whose sessions are all idle."""

    status: dict[str, str]
    errors: dict[str, str]
    idle: set[str]


class Instances:
    def __init__(self, opencode: Opencode, redis: Redis):
        self.opencode = opencode
        self.redis = redis

    def _times(self, key: str) -> dict[str, int]:
        """Directory → newest session update from a hash; empty when Redis does not answer (then every directory
        is asked, as before any release)."""
        try:
            return {k.decode(): int(v) for k, v in self.redis.hgetall(key).items()}
        except RedisError:
            return {}

    def released_at(self) -> dict[str, int]:
        """Directory → the newest session update it was released at."""
        return self._times(RELEASED_KEY)

    def released(self, sessions: list[dict[str, Any]]) -> set[str]:
        """The directories of `sessions` that are released and untouched since."""
        return _untouched(sessions, self.released_at())

    def known_idle(self, sessions: list[dict[str, Any]]) -> set[str]:
        """The directories of `sessions` known to be idle without asking: released or settled, untouched since."""
        settled = self._times(SETTLED_KEY)
        for directory, at in self.released_at().items():
            settled[directory] = max(at, settled.get(directory, 0))
        return _untouched(sessions, settled)

    def statuses(self, sessions: list[dict[str, Any]]) -> dict[str, str]:
        """Session id → status of the sessions that are not idle, asking only the directories not known to be idle."""
        live = {s["directory"] for s in sessions if s.get("directory")} - self.known_idle(sessions)
        found: dict[str, str] = {}
        with ThreadPoolExecutor(CALLS_IN_PARALLEL) as pool:
            for statuses in pool.map(self.opencode.statuses, sorted(live)):
                found.update(statuses)
        return found

    def look(self, sessions: list[dict[str, Any]], errors_for: set[str]) -> AgentStates:
        """Each session's status, and why the last reply failed for the sessions in `errors_for`; opencode is asked
        only about directories not known to be idle (one status call each, and one call per idle session in
        `errors_for`), and those seen idle long enough are remembered as settled."""
        known_idle = self.known_idle(sessions)
        grouped = by_directory(sessions)
        status: dict[str, str] = {}
        errors = {sid: e for sid, e in self.remembered_errors().items() if sid in errors_for}
        idle = set(known_idle)

        def ask(directory: str) -> tuple[str, dict[str, str], dict[str, LastReply]]:
            found = self.opencode.statuses(directory)
            asked = [s["id"] for s in grouped[directory] if s["id"] in errors_for and s["id"] not in found]
            return directory, found, {sid: self.opencode.last_reply(sid, directory) for sid in asked}

        with ThreadPoolExecutor(CALLS_IN_PARALLEL) as pool:
            answers = list(pool.map(ask, sorted(set(grouped) - known_idle)))
        newest = newest_updates(sessions)
        for directory, found, replies in answers:
            status.update(found)
            for sid, reply in replies.items():
                errors.pop(sid, None)
                if reply.error:
                    errors[sid] = reply.error
            # A prompt the agent has not started on yet (or a reply left unfinished) is not idle, whatever the status.
            quiet = not found and not any(reply.pending for reply in replies.values())
            if quiet:
                idle.add(directory)
            self._note(directory, newest.get(directory, 0), quiet, {sid: r.error for sid, r in replies.items()})
        return AgentStates(status, errors, idle)

    def _note(self, directory: str, newest: int, quiet: bool, errors: dict[str, str | None]) -> None:
        """Remember a directory as settled once it is seen quiet again SETTLE_SECONDS after it was first seen quiet,
        with no update in between (and the errors of its sessions as of then)."""
        try:
            if not quiet:
                self.redis.hdel(IDLE_SEEN_KEY, directory)
                return
            seen = (self.redis.hget(IDLE_SEEN_KEY, directory) or b"").decode().split()
            if not seen or int(seen[0]) != newest:
                self.redis.hset(IDLE_SEEN_KEY, directory, f"{newest} {time.time()}")
            elif time.time() - float(seen[1]) >= SETTLE_SECONDS:
                self._remember(errors)
                self.redis.hset(SETTLED_KEY, directory, newest)
        except RedisError:
            pass  # nothing remembered: the next look asks again

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
        self._remember({s["id"]: self.opencode.last_error(s["id"], directory) for s in sessions})

    def _remember(self, errors: dict[str, str | None]) -> None:
        for session_id, error in errors.items():
            if error:
                self.redis.hset(ERRORS_KEY, session_id, error)
            else:
                self.redis.hdel(ERRORS_KEY, session_id)

    def forget(self, directories: Iterable[str], session_ids: Iterable[str] = ()) -> None:
        """Drop what is remembered of deleted chats."""
        if directories := list(directories):
            for key in (RELEASED_KEY, SETTLED_KEY, IDLE_SEEN_KEY):
                self.redis.hdel(key, *directories)
        if session_ids := list(session_ids):
            self.redis.hdel(ERRORS_KEY, *session_ids)


def _untouched(sessions: list[dict[str, Any]], recorded: dict[str, int]) -> set[str]:
    """The directories of `sessions` none of whose sessions was updated after the time recorded for it."""
    return {d for d, t in newest_updates(sessions).items() if d in recorded and t <= recorded[d]}
