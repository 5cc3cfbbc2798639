"""What happens to chats, told once each: the rules of the agent watcher (`python -m watcher`).

opencode's global event stream says when a session turns busy or idle, when a reply is updated and when an agent asks
the person something. From those, and from opencode's state on every (re)connect, a chat (a top-level session; a
sub-agent's session counts for its chat) makes a ChatEvent:
- finished: idle after a turn whose last reply completed without error (body: the reply's first line);
- failed: the last reply ended in an error (body: the error); a stop the person asked for tells nothing;
- needs-input: a question or a permission was asked (body: domain.waiting's summary);
- interrupted: idle while the turn never finished: opencode was started again after it was last active, or it stays
  so SETTLE_SECONDS (domain.interruptions, agent_instances.Outcome) (body: why).

Exactly once: each event's key is claimed in Redis (SET NX, CLAIM_DAYS) before it is handed to `send`. Nothing is
missed across the watcher's own restarts: a chat seen busy is *owed* (OWED_KEY) until its turn's end was told, and
MARK_KEY says up to when everything else was handled; on (re)connect the owed chats and those updated since the
mark are read again. Without a mark (the very first start) nothing old is told: the mark starts now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis

from domain.agent_instances import SETTLE_SECONDS, Instances, by_directory
from domain.config import Settings
from domain.interruptions import Restarts
from domain.notifications import ChatEvent
from domain.opencode import IDLE, LastReply, Opencode, OpencodeError, reply_of
from domain.waiting import one_line, permission_summary, question_summary, requests_in

FINISHED, FAILED, INTERRUPTED, NEEDS_INPUT = "finished", "failed", "interrupted", "needs-input"
MARK_KEY = "mecodes:watcher:mark"  # ms: what happened before it has been handled
OWED_KEY = "mecodes:watcher:owed"  # session id -> directory: chats seen busy whose turn's end is still to be told
CLAIM_PREFIX = "mecodes:watcher:told:"  # + an event's key: claimed once, kept CLAIM_DAYS
CLAIM_DAYS = 7
MARGIN_MS = 60_000  # the mark lags this far behind: events in flight when it was written
MARK_EVERY = 10.0  # s between writes of the mark while the stream is quiet
CHECK_DELAY = 0.05  # s: the burst of events that ends a turn (status, idle, the reply's last update) reads it once
NO_TEXT = "The agent finished its turn."
SESSIONS_KEPT = 2000  # sessions (titles, parents) kept in memory
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """A session's last turn as its last message tells it."""

    reply: LastReply
    message_id: str
    asked_by: str  # the person's message that started the turn
    ended_ms: int | None  # when the reply completed
    first_line: str


def turn_of(message: dict[str, Any]) -> Turn | None:
    """The last turn, read from the session's last message (`{info, parts}`); None without one."""
    info = message.get("info") or {}
    if not info.get("id"):
        return None
    text = "\n".join(p.get("text") or "" for p in message.get("parts") or [] if p.get("type") == "text")
    first = next((line for line in text.splitlines() if line.strip()), "")
    asked_by = info["id"] if info.get("role") != "assistant" else info.get("parentID") or info["id"]
    ended = (info.get("time") or {}).get("completed")
    return Turn(reply_of(message), info["id"], asked_by, ended if isinstance(ended, int) else None, one_line(first))


def _updated(session: dict[str, Any]) -> int:
    return (session.get("time") or {}).get("updated") or 0


class ChatWatch:
    """Fed opencode's events one at a time (`handle`), and asked to read again what may have been missed
    (`reconcile`) on every connect; `run_due` reads the turns whose end is due. One thread drives it."""

    def __init__(self, opencode: Opencode, redis: Redis, settings: Settings, send: Callable[[ChatEvent], None]):
        self.opencode = opencode
        self.redis = redis
        self.settings = settings
        self.send = send
        self.sessions: dict[str, dict[str, Any]] = {}  # id -> {id, parentID, title, directory}
        self.status: dict[str, str] = {}  # id -> busy, retry or idle, as last reported
        self.owed: dict[str, str] = {}  # OWED_KEY's copy
        self.due: dict[str, float] = {}  # id -> when to read its last turn
        self.pending: dict[str, tuple[str, float]] = {}  # id -> (message id, when first seen unfinished while idle)
        self.mark = 0
        self.marked_at = 0.0

    # -- events

    def handle(self, event: dict[str, Any]) -> None:
        """One event of `GET /global/event` (`{directory, payload: {type, properties}}`)."""
        payload = event.get("payload") or {}
        kind, props = payload.get("type"), payload.get("properties") or {}
        sid = props.get("sessionID")
        if kind in ("session.created", "session.updated") and (props.get("info") or {}).get("id"):
            self._remember(props["info"])
        elif kind == "session.deleted" and sid:
            self.sessions.pop(sid, None)
            self._settle(sid)
        elif kind == "session.status" and sid:
            self._status(sid, (props.get("status") or {}).get("type") or IDLE, event.get("directory"))
        elif kind == "session.idle" and sid:
            self._status(sid, IDLE, event.get("directory"))
        elif kind == "message.updated" and sid and self.status.get(sid) == IDLE:
            info = props.get("info") or {}
            if info.get("role") == "assistant" and ((info.get("time") or {}).get("completed") or info.get("error")):
                self._read_at(sid, time.time() + CHECK_DELAY)
        elif kind in ("question.asked", "permission.asked") and props.get("id"):
            self._asked(props, question_summary(props) if kind == "question.asked" else permission_summary(props))

    def _status(self, sid: str, status: str, directory: str | None) -> None:
        self.status[sid] = status
        if status == IDLE:
            self._read_at(sid, time.time() + CHECK_DELAY)
        elif sid not in self.owed and (chat := self._chat(sid)) is not None:
            self._owe(sid, chat.get("directory") or directory or "")

    def _asked(self, request: dict[str, Any], summary: str) -> None:
        chat = self._root(request.get("sessionID") or "")
        if chat is not None:
            self._tell(NEEDS_INPUT, chat, summary, f"{NEEDS_INPUT}:{request['id']}")

    # -- reading turns

    def _read_at(self, sid: str, at: float) -> None:
        """Read the session's last turn at `at`, or sooner if it is due sooner."""
        self.due[sid] = min(at, self.due.get(sid, at))

    def next_due(self) -> float | None:
        return min(self.due.values(), default=None)

    def run_due(self) -> None:
        now = time.time()
        for sid in [sid for sid, at in self.due.items() if at <= now]:
            del self.due[sid]
            self._check(sid)

    def _check(self, sid: str) -> None:
        """Read the chat's last turn now that it is idle, and tell how it ended, if it ended."""
        chat = self._chat(sid)
        if chat is None:
            self._settle(sid)
            return
        if self.status.get(sid, IDLE) != IDLE:
            return  # a new turn began: its own end will be read
        try:
            turn = turn_of(self.opencode.last_message(sid, chat["directory"]))
        except OpencodeError as exc:
            if exc.status != 404:
                raise
            turn = None  # deleted meanwhile
        if turn is None or turn.reply.stopped:
            self._settle(sid)
            return
        owed = sid in self.owed
        if turn.reply.error or not turn.reply.pending:
            if owed or (turn.ended_ms or 0) >= self.mark:
                kind = FAILED if turn.reply.error else FINISHED
                body = turn.reply.error or turn.first_line or NO_TEXT
                self._tell(kind, chat, body, f"{kind}:{sid}:{turn.message_id}")
            self._settle(sid)
            return
        restarts, now = Restarts.read(self.settings), time.time()
        first_seen = self.pending.get(sid)
        if first_seen is None or first_seen[0] != turn.message_id:
            self.pending[sid] = first_seen = (turn.message_id, now)
        if restarts.cut_short(turn.reply) or now - first_seen[1] >= SETTLE_SECONDS:
            if owed or (turn.reply.last_active or 0) * 1000 >= self.mark:
                self._tell(INTERRUPTED, chat, restarts.why(turn.reply), f"{INTERRUPTED}:{sid}:{turn.asked_by}")
            self._settle(sid)
        else:  # opencode says idle an instant before it records why a reply failed: read it again
            self._read_at(sid, first_seen[1] + SETTLE_SECONDS)

    # -- on (re)connect

    def reconcile(self) -> None:
        """Read again what may have changed while no events came: the owed chats and the chats updated since the
        mark (not those whose agent was given back since: they are idle and told), and what the busy ones ask."""
        self.sessions.clear()
        self.status.clear()
        self.due.clear()
        self.pending.clear()
        now_ms = int(time.time() * 1000)
        mark = self.redis.get(MARK_KEY)
        if mark is None:
            self.mark = now_ms
            self.redis.set(MARK_KEY, now_ms)
            self.marked_at = time.time()
            log.info("first start: chats that ended before now are not told")
            return
        self.mark = int(mark)
        self.owed = {k.decode(): v.decode() for k, v in self.redis.hgetall(OWED_KEY).items()}
        sessions = self.opencode.sessions()
        for session in sessions:
            self._remember(session)
        released = Instances(self.opencode, self.redis).released(sessions)
        fresh = [s for s in sessions if _updated(s) >= self.mark and s.get("directory") not in released]
        wanted = {s["id"]: s["directory"] for s in fresh if s.get("directory")}
        for sid, directory in self.owed.items():
            if self._chat(sid) is None:
                self._settle(sid)
            else:
                wanted.setdefault(sid, self.sessions[sid].get("directory") or directory)
        busy = self._read_statuses(wanted)
        for sid in wanted:
            if sid not in busy:
                self._check(sid)
        for directory in {wanted[sid] for sid in busy}:
            for request, waiting in requests_in(self.opencode, directory):
                self._asked(request, waiting.summary)
        self.keep_mark(now_ms - MARGIN_MS)

    def _read_statuses(self, wanted: dict[str, str]) -> set[str]:
        """The sessions of `wanted` (id -> directory) that are busy, now owed; the others read idle."""
        busy = set()
        grouped = by_directory({"id": sid, "directory": d} for sid, d in wanted.items())
        for directory, members in grouped.items():
            statuses = self.opencode.statuses(directory)
            for sid in (m["id"] for m in members):
                self.status[sid] = statuses.get(sid, IDLE)
                if sid in statuses:
                    busy.add(sid)
                    if sid not in self.owed:
                        self._owe(sid, directory)
        return busy

    def keep_mark(self, at_ms: int | None = None) -> None:
        """Move the mark on (every MARK_EVERY at most): called once every event received so far is handled."""
        if at_ms is None and time.time() - self.marked_at < MARK_EVERY:
            return
        self.mark = max(self.mark, at_ms if at_ms is not None else int(time.time() * 1000) - MARGIN_MS)
        self.redis.set(MARK_KEY, self.mark)
        self.marked_at = time.time()

    # -- chats and telling

    def _remember(self, info: dict[str, Any]) -> dict[str, Any]:
        if len(self.sessions) >= SESSIONS_KEPT:  # months of sessions: start again from those asked about next
            self.sessions.clear()
            self.status = {sid: status for sid, status in self.status.items() if status != IDLE}
        kept = {k: info.get(k) for k in ("id", "parentID", "title", "directory")}
        self.sessions[info["id"]] = kept
        return kept

    def _session(self, sid: str) -> dict[str, Any] | None:
        if sid in self.sessions:
            return self.sessions[sid]
        found = self.opencode.session(sid) if sid else None
        return self._remember(found) if found else None

    def _chat(self, sid: str) -> dict[str, Any] | None:
        """The session when it is a chat (top-level), else None."""
        session = self._session(sid)
        return session if session is not None and not session.get("parentID") else None

    def _root(self, sid: str) -> dict[str, Any] | None:
        """The chat a session belongs to: itself, or the chat whose sub-agent it is."""
        session = self._session(sid)
        for _ in range(8):  # sub-agents of sub-agents, not cycles
            if session is None or not session.get("parentID"):
                return session
            session = self._session(session["parentID"])
        return None

    def _owe(self, sid: str, directory: str) -> None:
        self.owed[sid] = directory
        self.redis.hset(OWED_KEY, sid, directory)

    def _settle(self, sid: str) -> None:
        self.pending.pop(sid, None)
        if self.owed.pop(sid, None) is not None:
            self.redis.hdel(OWED_KEY, sid)

    def _tell(self, kind: str, chat: dict[str, Any], body: str, key: str) -> None:
        """Hand the event to `send` unless its key was claimed before; a failed send gives the claim back."""
        if not self.redis.set(f"{CLAIM_PREFIX}{key}", int(time.time()), nx=True, ex=CLAIM_DAYS * 86400):
            return
        sid = chat["id"]
        title = chat.get("title") or "A chat"
        event = ChatEvent(kind=kind, session_id=sid, title=title, body=one_line(body), url=f"/#/chat/{sid}", key=key)
        try:
            self.send(event)
        except BaseException:
            self.redis.delete(f"{CLAIM_PREFIX}{key}")
            raise
        log.info("told %s: %s", key, event.body)
