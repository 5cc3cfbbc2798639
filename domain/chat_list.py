"""The chat view: opencode's sessions joined with our worktrees (read-only; the API's side of chats)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from domain.agent_instances import CALLS_IN_PARALLEL, Instances
from domain.gitcmd import Git
from domain.inventory import WorktreeInfo, all_worktrees, disk_usage, last_activity
from domain.layout import Layout
from domain.opencode import ERROR, IDLE

DISK_USAGE_MAX_AGE = 60  # seconds


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if isinstance(value, int | float) else None


def chat_entries(layout: Layout, git: Git, instances: Instances) -> list[dict[str, Any]]:
    """Every session and every worktree, joined. Whether a reply failed is asked only for chats that still
    have their worktree (one request each): old sessions without one accumulate and are shown as they are.
    Released instances are not woken: their chats are idle, with the error remembered at release."""
    sessions = instances.opencode.sessions()
    worktrees = all_worktrees(layout, git)
    by_session = {w.opencode_session: w for w in worktrees if w.opencode_session}
    released, remembered = instances.released(sessions), instances.remembered_errors()
    status = instances.statuses(sessions, released)

    def entry(session: dict[str, Any]) -> dict[str, Any]:
        worktree = by_session.get(session["id"])
        if session["directory"] in released:
            error = remembered.get(session["id"]) if worktree else None
            return _entry(session, worktree, ERROR if error else IDLE, error)
        return _entry(session, worktree, *_state(instances, session, worktree, status.get(session["id"], IDLE)))

    with ThreadPoolExecutor(CALLS_IN_PARALLEL) as pool:
        entries = list(pool.map(entry, sessions))
    known = {s["id"] for s in sessions}
    entries += [_entry(None, w, None) for w in worktrees if w.opencode_session not in known]
    return sorted(entries, key=lambda e: e["last_activity"] or datetime.min.replace(tzinfo=UTC), reverse=True)


@lru_cache(maxsize=1024)
def _disk_usage_at(path: Path, touched: float | None, period: int) -> int:
    return disk_usage(path)


def recent_disk_usage(path: Path, touched: float | None) -> int:
    """disk_usage, remembered for up to DISK_USAGE_MAX_AGE while the worktree shows no new activity: the walk
    costs about 20 ms per 3,000 files, the phone polls the list, and the figure is only shown."""
    return _disk_usage_at(path, touched, int(time.time() // DISK_USAGE_MAX_AGE))


def _state(
    instances: Instances, session: dict[str, Any], worktree: WorktreeInfo | None, status: str
) -> tuple[str, str | None]:
    """(status, why the last reply failed): an idle chat whose last reply failed is in `error`."""
    if status != IDLE or worktree is None:
        return status, None
    # Not cached: opencode reports the session idle, and only then records the reply's error, without a new
    # update time; so nothing observable says when a cached answer went stale.
    error = instances.opencode.last_error(session["id"], session["directory"])
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
        "disk_bytes": recent_disk_usage(worktree.path, touched) if worktree and worktree.exists else None,
    }
