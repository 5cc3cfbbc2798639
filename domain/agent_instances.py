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

How each session's last turn ended short, if it did, is remembered with it (an Outcome): it failed, it was
interrupted, or the person stopped it. A turn still unfinished when its directory settles, or one that opencode was
started again after, was interrupted (domain.interruptions): it will never finish by itself.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from domain.interruptions import Restarts
from domain.opencode import ERROR, INTERRUPTED, STOPPED, LastReply, Opencode, OpencodeUnavailable

RELEASED_KEY = "mecodes:agents:released"  # directory -> the newest session update (ms) when last released
SETTLED_KEY = "mecodes:agents:settled"  # directory -> the newest session update (ms) when it was seen settled
IDLE_SEEN_KEY = "mecodes:agents:idle-seen"  # directory -> "<newest update (ms)> <when first seen idle (s)>"
OUTCOMES_KEY = "mecodes:agents:outcomes"  # session id -> its last turn's Outcome (JSON), as of release or settling
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
class Outcome:
    """A last turn that ended short: `status` is error (the reply failed), interrupted (`at`: when it stopped) or
    stopped (on request)."""

    status: str
    message: str
    at: float | None = None

    @classmethod
    def of(cls, reply: LastReply, restarts: Restarts, settled: bool) -> Outcome | None:
        """The reply's outcome; an unfinished one counts as interrupted once its directory settled or opencode
        started after it."""
        if reply.error:
            return cls(ERROR, reply.error)
        if reply.stopped:
            return cls(STOPPED, "stopped on request")
        if reply.pending and (settled or restarts.cut_short(reply)):
            return cls(INTERRUPTED, restarts.why(reply), reply.last_active)
        return None


@dataclass(frozen=True)
class AgentStates:
    """What a look at opencode found: each session's status (idle unless said otherwise), how a session's last turn
    ended short (for the sessions asked about), and the directories whose sessions are all idle."""

    status: dict[str, str]
    outcomes: dict[str, Outcome]
    idle: set[str]


class Instances:
    def __init__(self, opencode: Opencode, redis: Redis, restarts: Restarts | None = None):
        self.opencode = opencode
        self.redis = redis
        self.restarts = restarts or Restarts()

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

    def look(self, sessions: list[dict[str, Any]], outcomes_for: set[str]) -> AgentStates:
        """Each session's status, and how the last turn ended for the sessions in `outcomes_for`; opencode is asked
        only about directories not known to be idle (one status call each, and one call per idle session in
        `outcomes_for`), and those seen idle long enough are remembered as settled."""
        known_idle = self.known_idle(sessions)
        grouped = by_directory(sessions)
        status: dict[str, str] = {}
        outcomes = {sid: o for sid, o in self.remembered_outcomes().items() if sid in outcomes_for}
        idle = set(known_idle)

        def ask(directory: str) -> tuple[str, dict[str, str], dict[str, LastReply]]:
            found = self.opencode.statuses(directory)
            asked = [s["id"] for s in grouped[directory] if s["id"] in outcomes_for and s["id"] not in found]
            return directory, found, {sid: self.opencode.last_reply(sid, directory) for sid in asked}

        with ThreadPoolExecutor(CALLS_IN_PARALLEL) as pool:
            answers = list(pool.map(ask, sorted(set(grouped) - known_idle)))
        newest = newest_updates(sessions)
        for directory, found, replies in answers:
            status.update(found)
            settled = self._settles(directory, newest.get(directory, 0), idle_now=not found)
            ended = {sid: Outcome.of(reply, self.restarts, settled) for sid, reply in replies.items()}
            for sid, outcome in ended.items():
                outcomes.pop(sid, None)
                if outcome:
                    outcomes[sid] = outcome
            # A prompt the agent has not started on yet (or a reply left unfinished) is not idle, whatever the
            # status, until it is known to be interrupted.
            if not found and not any(r.pending and not ended[sid] for sid, r in replies.items()):
                idle.add(directory)
            if settled:
                self._remember(ended)
        return AgentStates(status, outcomes, idle)

    def _settles(self, directory: str, newest: int, idle_now: bool) -> bool:
        """Whether the directory settles now: seen idle again SETTLE_SECONDS after it was first seen idle, with no
        update in between. A settled directory is remembered so, until its next update."""
        try:
            if not idle_now:
                self.redis.hdel(IDLE_SEEN_KEY, directory)
                return False
            seen = (self.redis.hget(IDLE_SEEN_KEY, directory) or b"").decode().split()
            if not seen or int(seen[0]) != newest:
                self.redis.hset(IDLE_SEEN_KEY, directory, f"{newest} {time.time()}")
                return False
            if time.time() - float(seen[1]) < SETTLE_SECONDS:
                return False
            self.redis.hset(SETTLED_KEY, directory, newest)
            return True
        except RedisError:
            return False  # nothing remembered: the next look asks again

    def remembered_outcomes(self) -> dict[str, Outcome]:
        try:
            return {k.decode(): Outcome(**json.loads(v)) for k, v in self.redis.hgetall(OUTCOMES_KEY).items()}
        except (RedisError, ValueError, TypeError):
            return {}

    def release(self, directory: str, sessions: list[dict[str, Any]], newest: int) -> None:
        """Remember how each of the directory's sessions last ended, then dispose of its instance."""
        self._remember_outcomes(directory, sessions)
        self.opencode.dispose(directory)
        self.redis.hset(RELEASED_KEY, directory, newest)

    def release_all(self, sessions: list[dict[str, Any]], agents: AgentStates) -> None:
        """Before opencode restarts, which ends every instance: what `release` remembers, for every live one, taken
        from `agents`, a look just made at all of `sessions` that found every directory idle."""
        released, newest = self.released(sessions), newest_updates(sessions)
        for directory, its_sessions in by_directory(sessions).items():
            if directory not in released:
                self._remember({s["id"]: agents.outcomes.get(s["id"]) for s in its_sessions})
                self.redis.hset(RELEASED_KEY, directory, newest[directory])

    def _remember_outcomes(self, directory: str, sessions: list[dict[str, Any]]) -> None:
        """For idle sessions, quiet a while: an unfinished turn among them was interrupted."""
        replies = {s["id"]: self.opencode.last_reply(s["id"], directory) for s in sessions}
        self._remember({sid: Outcome.of(reply, self.restarts, settled=True) for sid, reply in replies.items()})

    def _remember(self, outcomes: dict[str, Outcome | None]) -> None:
        for session_id, outcome in outcomes.items():
            if outcome:
                self.redis.hset(OUTCOMES_KEY, session_id, json.dumps(asdict(outcome)))
            else:
                self.redis.hdel(OUTCOMES_KEY, session_id)

    def forget(self, directories: Iterable[str], session_ids: Iterable[str] = ()) -> None:
        """Drop what is remembered of deleted chats."""
        if directories := list(directories):
            for key in (RELEASED_KEY, SETTLED_KEY, IDLE_SEEN_KEY):
                self.redis.hdel(key, *directories)
        if session_ids := list(session_ids):
            self.redis.hdel(OUTCOMES_KEY, *session_ids)


def _untouched(sessions: list[dict[str, Any]], recorded: dict[str, int]) -> set[str]:
    """The directories of `sessions` none of whose sessions was updated after the time recorded for it."""
    return {d for d, t in newest_updates(sessions).items() if d in recorded and t <= recorded[d]}


def stop_agents_in(opencode: Opencode, redis: Redis, directories: Iterable[Path | str]) -> list[str]:
    """Abort every session working in one of `directories`, which are about to be removed (an agent left running
    in a deleted folder goes on writing nowhere). Returns the sessions aborted; none when opencode is down."""
    wanted = {str(d) for d in directories}
    try:
        sessions = {s["id"]: s for s in opencode.sessions() if s.get("directory") in wanted}
        busy = sorted(Instances(opencode, redis).statuses(list(sessions.values())))
        for session_id in busy:
            opencode.abort(session_id, sessions[session_id]["directory"])
    except OpencodeUnavailable:
        return []
    return busy
