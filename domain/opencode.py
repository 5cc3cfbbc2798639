"""A small client for the parts of opencode's HTTP API that chats use.

opencode keeps one instance per directory: sessions, their status and their messages are asked for with the
session's directory (`?directory=`). Only `/experimental/session` lists the sessions of all projects at once.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, NamedTuple

IDLE = "idle"
ERROR = "error"  # ours: idle, and the last reply ended in an error
INTERRUPTED = "interrupted"  # ours: idle, and the last turn never finished (domain.interruptions)
STOPPED = "stopped"  # ours: idle, and the person stopped the last reply (opencode's abort); not a failure
ABORTED = "MessageAbortedError"
SESSION_PREFIX = "ses"
RUNNING_STATES = {"pending", "running"}  # a tool step not yet ended


class RunningStep(NamedTuple):
    message_id: str
    part: dict[str, Any]

    @property
    def title(self) -> str:
        """What the step did, in a few words: `bash: sleep 600`."""
        state = self.part.get("state") or {}
        subject = (state.get("input") or {}).get("command") or state.get("title") or ""
        return f"{self.part.get('tool', 'tool')}: {subject}"[:120].rstrip(": ")


class LastReply(NamedTuple):
    """How a session's last turn stands. `pending`: no finished reply yet (the person's message is last, or the
    reply is unfinished). For a pending turn: when it was last seen active (s), and the tool steps it left running
    (ids and what each did), which an interrupted turn leaves so. `stopped`: the person stopped the reply."""

    error: str | None
    pending: bool
    last_active: float | None = None
    running_steps: tuple[RunningStep, ...] = ()
    model: dict[str, str] | None = None
    stopped: bool = False


class OpencodeUnavailable(RuntimeError):
    """opencode did not answer (down, starting, or not configured)."""


class OpencodeError(RuntimeError):
    """opencode answered with an error."""

    def __init__(self, status: int, message: str):
        super().__init__(f"opencode answered {status}: {message}")
        self.status = status


class Opencode:
    def __init__(self, base_url: str, timeout: float = 10):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, directory: str | None = None, body: Any = None, **params: str | int) -> Any:
        if not self.base_url:
            raise OpencodeUnavailable("opencode is not configured (OPENCODE_URL is empty)")
        params = {**params, **({"directory": directory} if directory else {})}
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = json.dumps(body).encode() if body is not None else None
        url = f"{self.base_url}{path}{query}"
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310 - OPENCODE_URL
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - OPENCODE_URL
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise OpencodeError(error.code, error.read().decode(errors="replace")[:300]) from None
        except (urllib.error.URLError, OSError) as error:
            raise OpencodeUnavailable(f"opencode is not answering at {self.base_url} ({error})") from None
        return json.loads(raw) if raw.strip() else None

    def check(self) -> None:
        """Raise OpencodeUnavailable unless opencode reports itself healthy."""
        try:
            healthy = self._call("GET", "/global/health").get("healthy") is True
        except OpencodeError as error:
            raise OpencodeUnavailable(f"opencode is unhealthy at {self.base_url} ({error})") from None
        if not healthy:
            raise OpencodeUnavailable(f"opencode reports itself unhealthy at {self.base_url}")

    def create_session(self, directory: str, title: str, metadata: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/session", directory, {"title": title, "metadata": metadata})

    def prompt(
        self,
        session_id: str,
        directory: str,
        text: str,
        model: dict[str, str] | None,
        agent: str | None = None,
        files: Sequence[dict[str, str]] = (),
    ) -> None:
        """Send a message; `files` are opencode's file parts (`{type: file, mime, filename, url}`), images here."""
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}, *files]}
        if model:
            body["model"] = model
        if agent:
            body["agent"] = agent
        self._call("POST", f"/session/{_quoted(session_id)}/prompt_async", directory, body)

    def providers(self, directory: str) -> dict[str, Any]:
        """The providers opencode has set up, with their models, and each one's default model."""
        return self._call("GET", "/config/providers", directory)

    def agents(self, directory: str) -> list[dict[str, Any]]:
        return self._call("GET", "/agent", directory) or []

    def config(self, directory: str) -> dict[str, Any]:
        """opencode's config as it applies in `directory` (the default `model` and `default_agent` among it)."""
        return self._call("GET", "/config", directory) or {}

    def session(self, session_id: str) -> dict[str, Any] | None:
        if not session_id.startswith(SESSION_PREFIX):
            return None  # not one of opencode's ids (which it answers with a 500, not a 404)
        try:
            return self._call("GET", f"/session/{_quoted(session_id)}")
        except OpencodeError as error:
            if error.status == 404:
                return None
            raise

    def sessions(self, limit: int = 500, roots: bool = True) -> list[dict[str, Any]]:
        """The top-level sessions of every project (with `roots=False` sub-agents' too), most recently updated
        first."""
        return self._call("GET", "/experimental/session", roots=str(roots).lower(), limit=limit)

    def statuses(self, directory: str) -> dict[str, str]:
        """Session id → status (busy, retry, ...) for the sessions of `directory` that are not idle."""
        statuses = self._call("GET", "/session/status", directory)
        found = {sid: status.get("type", "busy") for sid, status in statuses.items()}
        return {sid: status for sid, status in found.items() if status != IDLE}

    def questions(self, directory: str) -> list[dict[str, Any]]:
        """The questions the agents of `directory` asked and wait to have answered (opencode's question tool)."""
        return self._call("GET", "/question", directory) or []

    def permissions(self, directory: str) -> list[dict[str, Any]]:
        """The permissions the agents of `directory` asked for and wait on (a config that says `ask`)."""
        return self._call("GET", "/permission", directory) or []

    def message(self, session_id: str, message_id: str, directory: str) -> dict[str, Any]:
        """One message of the session (`{info, parts}`)."""
        return self._call("GET", f"/session/{_quoted(session_id)}/message/{_quoted(message_id)}", directory)

    def last_message(self, session_id: str, directory: str) -> dict[str, Any]:
        """The session's last message (`{info, parts}`); empty when it has none."""
        messages = self._call("GET", f"/session/{_quoted(session_id)}/message", directory, limit=1) or []
        return messages[-1] if messages else {}

    def last_reply(self, session_id: str, directory: str) -> LastReply:
        """How the session's last turn stands: its error (an abort the user asked for is not a failure), and
        whether a reply is still to come (the last message is the person's, or an unfinished reply)."""
        return reply_of(self.last_message(session_id, directory))

    def last_error(self, session_id: str, directory: str) -> str | None:
        """Why the session's last reply failed, if it did."""
        return self.last_reply(session_id, directory).error

    def fail_step(self, session_id: str, directory: str, step: RunningStep, why: str) -> None:
        """Close a tool step left running as failed, saying why (opencode keeps it `running` forever otherwise)."""
        state = step.part.get("state") or {}
        started = (state.get("time") or {}).get("start") or int(time.time() * 1000)
        closed = {
            "status": "error",
            "input": state.get("input") or {},
            "error": why,
            "metadata": state.get("metadata") or {},
            "time": {"start": started, "end": max(started, int(time.time() * 1000))},
        }
        path = f"/session/{_quoted(session_id)}/message/{_quoted(step.message_id)}/part/{_quoted(step.part['id'])}"
        self._call("PATCH", path, directory, {**step.part, "state": closed})

    def abort(self, session_id: str, directory: str) -> None:
        self._call("POST", f"/session/{_quoted(session_id)}/abort", directory)

    def delete(self, session_id: str, directory: str) -> None:
        self._call("DELETE", f"/session/{_quoted(session_id)}", directory)

    def dispose(self, directory: str) -> None:
        """Drop opencode's in-memory instance for `directory`; the next request for it builds a fresh one."""
        self._call("POST", "/instance/dispose", directory)


def reply_of(message: dict[str, Any]) -> LastReply:
    """A session's last message (`{info, parts}`) read as its last turn."""
    info = message.get("info") or {}
    if info.get("role") != "assistant":
        return LastReply(None, pending=bool(info), last_active=_seconds((info.get("time") or {}).get("created")))
    error = info.get("error")
    pending = not error and not (info.get("time") or {}).get("completed")
    model = {"providerID": info["providerID"], "modelID": info["modelID"]} if info.get("modelID") else None
    if isinstance(error, dict) and error.get("name") != ABORTED:
        why = (error.get("data") or {}).get("message") or error.get("name") or "the reply failed"
        return LastReply(str(why), pending, model=model)
    if not pending:
        return LastReply(None, False, model=model, stopped=isinstance(error, dict))  # an error here is an abort
    parts = message.get("parts") or []
    times = [(info.get("time") or {}).get("created")]
    for part in parts:
        times += [*((part.get("time") or {}).values()), *(((part.get("state") or {}).get("time") or {}).values())]
    running = tuple(
        RunningStep(info.get("id", ""), part)
        for part in parts
        if part.get("type") == "tool" and (part.get("state") or {}).get("status") in RUNNING_STATES
    )
    newest = max((t for t in times if isinstance(t, int | float)), default=None)
    return LastReply(None, True, _seconds(newest), running, model)


def _seconds(ms: Any) -> float | None:
    return ms / 1000 if isinstance(ms, int | float) else None


def _quoted(session_id: str) -> str:
    return urllib.parse.quote(session_id, safe="")
