"""A small client for the parts of opencode's HTTP API that chats use.

opencode keeps one instance per directory: sessions, their status and their messages are asked for with the
session's directory (`?directory=`). Only `/experimental/session` lists the sessions of all projects at once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, NamedTuple

IDLE = "idle"
ERROR = "error"  # ours: idle, and the last reply ended in an error
ABORTED = "MessageAbortedError"
SESSION_PREFIX = "ses"


class LastReply(NamedTuple):
    error: str | None
    pending: bool


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

    def prompt(self, session_id: str, directory: str, text: str, model: dict[str, str] | None) -> None:
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        if model:
            body["model"] = model
        self._call("POST", f"/session/{_quoted(session_id)}/prompt_async", directory, body)

    def session(self, session_id: str) -> dict[str, Any] | None:
        if not session_id.startswith(SESSION_PREFIX):
            return None  # not one of opencode's ids (which it answers with a 500, not a 404)
        try:
            return self._call("GET", f"/session/{_quoted(session_id)}")
        except OpencodeError as error:
            if error.status == 404:
                return None
            raise

    def sessions(self, limit: int = 500) -> list[dict[str, Any]]:
        """The top-level sessions of every project (not sub-agents'), most recently updated first."""
        return self._call("GET", "/experimental/session", roots="true", limit=limit)

    def statuses(self, directory: str) -> dict[str, str]:
        """Session id → status (busy, retry, ...) for the sessions of `directory` that are not idle."""
        statuses = self._call("GET", "/session/status", directory)
        found = {sid: status.get("type", "busy") for sid, status in statuses.items()}
        return {sid: status for sid, status in found.items() if status != IDLE}

    def last_reply(self, session_id: str, directory: str) -> LastReply:
        """How the session's last turn stands: its error (an abort the user asked for is not a failure), and
        whether a reply is still to come (the last message is the person's, or an unfinished reply)."""
        messages = self._call("GET", f"/session/{_quoted(session_id)}/message", directory, limit=1) or []
        info = messages[-1].get("info", {}) if messages else {}
        if info.get("role") != "assistant":
            return LastReply(None, pending=bool(info))
        error = info.get("error")
        pending = not error and not (info.get("time") or {}).get("completed")
        if not isinstance(error, dict) or error.get("name") == ABORTED:
            return LastReply(None, pending)
        why = (error.get("data") or {}).get("message") or error.get("name") or "the reply failed"
        return LastReply(str(why), pending)

    def last_error(self, session_id: str, directory: str) -> str | None:
        """Why the session's last reply failed, if it did."""
        return self.last_reply(session_id, directory).error

    def abort(self, session_id: str, directory: str) -> None:
        self._call("POST", f"/session/{_quoted(session_id)}/abort", directory)

    def delete(self, session_id: str, directory: str) -> None:
        self._call("DELETE", f"/session/{_quoted(session_id)}", directory)

    def dispose(self, directory: str) -> None:
        """Drop opencode's in-memory instance for `directory`; the next request for it builds a fresh one."""
        self._call("POST", "/instance/dispose", directory)


def _quoted(session_id: str) -> str:
    return urllib.parse.quote(session_id, safe="")
