"""The chat view: opencode's sessions joined with our worktrees (read-only; the API's side of chats)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sidecar.gitcmd import Git
from sidecar.inventory import WorktreeInfo, all_worktrees, disk_usage, last_activity
from sidecar.layout import Layout
from sidecar.opencode import ERROR, IDLE, Opencode


def statuses_by_session(opencode: Opencode, directories: set[str]) -> dict[str, str]:
    """Session id → status for every session in `directories` (idle unless opencode says otherwise)."""
    found: dict[str, str] = {}
    for directory in sorted(directories):
        found.update(opencode.statuses(directory))
    return found


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if isinstance(value, int | float) else None


def chat_entries(layout: Layout, git: Git, opencode: Opencode) -> list[dict[str, Any]]:
    """Every session and every worktree, joined. Whether a reply failed is asked only for chats that still
    have their worktree (one request each): old sessions without one accumulate and are shown as they are."""
    sessions = opencode.sessions()
    worktrees = all_worktrees(layout, git)
    by_session = {w.opencode_session: w for w in worktrees if w.opencode_session}
    status = statuses_by_session(opencode, {s["directory"] for s in sessions})
    entries = [
        _entry(s, w, *_state(opencode, s, w, status.get(s["id"], IDLE)))
        for s in sessions
        for w in [by_session.get(s["id"])]
    ]
    known = {s["id"] for s in sessions}
    entries += [_entry(None, w, None) for w in worktrees if w.opencode_session not in known]
    return sorted(entries, key=lambda e: e["last_activity"] or datetime.min.replace(tzinfo=UTC), reverse=True)


def _state(
    opencode: Opencode, session: dict[str, Any], worktree: WorktreeInfo | None, status: str
) -> tuple[str, str | None]:
    """(status, why the last reply failed): an idle chat whose last reply failed is in `error`."""
    if status != IDLE or worktree is None:
        return status, None
    error = opencode.last_error(session["id"], session["directory"])
    return (ERROR if error else IDLE), error


def _entry(
    session: dict[str, Any] | None, worktree: WorktreeInfo | None, status: str | None, last_error: str | None = None
) -> dict[str, Any]:
    meta = ((session or {}).get("metadata") or {}).get("mecodes") or {}
    updated = _ms(((session or {}).get("time") or {}).get("updated"))
    touched = last_activity(worktree.path) if worktree and worktree.exists else None
    activity = [t for t in (updated, datetime.fromtimestamp(touched, UTC) if touched else None) if t]
    return {
        "session_id": session["id"] if session else (worktree.opencode_session if worktree else None),
        "title": session.get("title") if session else None,
        "repo": str(worktree.repo) if worktree else meta.get("repo"),
        "branch": worktree.branch if worktree else meta.get("branch"),
        "status": status,
        "last_error": last_error,
        "last_activity": max(activity, default=None),
        "has_session": session is not None,
        "has_worktree": worktree is not None,
        "worktree": worktree.session_id if worktree else None,
        "path": str(worktree.path) if worktree else (session or {}).get("directory"),
        "dirty": worktree.state.dirty if worktree and worktree.state else None,
        "unpushed_commits": worktree.state.unpushed_commits if worktree and worktree.state else None,
        "disk_bytes": disk_usage(worktree.path) if worktree and worktree.exists else None,
    }
