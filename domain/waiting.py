"""What a chat waits on the person for: a question its agent asked (opencode's `question` tool) or a permission it
asked for (a command, a file, a pattern the config says to `ask` about).

opencode keeps these requests per directory, in memory (`GET /question`, `GET /permission`), and reports the asking
session busy until they are answered, so only a busy chat can be waiting: idle chats cost no call here. It also keeps
listing the requests of a turn that was aborted meanwhile, so a request counts only while the tool step that made it
is still running (one more call per request listed).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from domain.agent_instances import CALLS_IN_PARALLEL, by_directory
from domain.opencode import RUNNING_STATES, Opencode, OpencodeError, OpencodeUnavailable

NEEDS_INPUT = "needs-input"  # ours: busy, and the agent waits on the person's answer
QUESTION, PERMISSION = "question", "permission"
SUMMARY_CHARS = 200


@dataclass(frozen=True)
class Waiting:
    """What a session waits for: `kind` question or permission, and a one-line `summary` (the question, or what
    the permission is for: `bash: rm -r build`)."""

    kind: str
    summary: str


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_CHARS else f"{line[: SUMMARY_CHARS - 1]}…"


def question_summary(request: dict[str, Any]) -> str:
    questions = request.get("questions") or [{}]
    more = f" (and {len(questions) - 1} more)" if len(questions) > 1 else ""
    return one_line(f"{questions[0].get('question') or questions[0].get('header') or 'a question'}{more}")


def permission_summary(request: dict[str, Any]) -> str:
    metadata = request.get("metadata") or {}
    subject = metadata.get("command") or metadata.get("filepath") or ", ".join(request.get("patterns") or [])
    name = request.get("permission") or "permission"
    return one_line(f"{name}: {subject}" if subject else name)


def still_asked(opencode: Opencode, request: dict[str, Any], directory: str) -> bool:
    """Whether the tool step that made the request is still running (an aborted turn's requests stay listed)."""
    tool = request.get("tool") or {}
    if not tool.get("messageID") or not request.get("sessionID"):
        return True
    try:
        message = opencode.message(request["sessionID"], tool["messageID"], directory)
    except OpencodeError:
        return False  # its message is gone
    step = next((p for p in message.get("parts") or [] if p.get("callID") == tool.get("callID")), None)
    return step is None or (step.get("state") or {}).get("status") in RUNNING_STATES


def requests_in(opencode: Opencode, directory: str) -> list[tuple[dict[str, Any], Waiting]]:
    """The questions and permissions the agents of `directory` still wait on, each with what it waits for."""
    found = [(r, Waiting(QUESTION, question_summary(r))) for r in opencode.questions(directory)]
    found += [(r, Waiting(PERMISSION, permission_summary(r))) for r in opencode.permissions(directory)]
    return [(r, waiting) for r, waiting in found if still_asked(opencode, r, directory)]


def waiting_in(opencode: Opencode, directories: Iterable[str], sessions: list[dict[str, Any]]) -> dict[str, Waiting]:
    """Session id → what it waits for, among the sessions of `directories` (two calls each, and one per request they
    list; a few directories at once). A request of a session not in `sessions` (a sub-agent's) counts for its
    directory's newest session in `sessions`. A directory opencode does not answer for counts as waiting for nothing:
    the list still answers."""
    grouped = by_directory(sessions)

    def ask(directory: str) -> dict[str, Waiting]:
        try:
            found = requests_in(opencode, directory)
        except (OpencodeError, OpencodeUnavailable):
            return {}
        listed = {s["id"] for s in grouped.get(directory, [])}
        newest = max(grouped.get(directory, []), key=lambda s: (s.get("time") or {}).get("updated") or 0, default={})
        waits: dict[str, Waiting] = {}
        for request, waiting in found:
            owner = request.get("sessionID") if request.get("sessionID") in listed else newest.get("id")
            if owner:
                waits.setdefault(owner, waiting)
        return waits

    waiting: dict[str, Waiting] = {}
    with ThreadPoolExecutor(CALLS_IN_PARALLEL) as pool:
        for found in pool.map(ask, sorted(set(directories))):
            waiting.update(found)
    return waiting
