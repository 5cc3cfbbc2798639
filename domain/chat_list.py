"""The chat list: opencode's sessions joined with our worktrees, from what is cheap and current.

One call lists opencode's sessions (with each one's tokens and cost, which domain.costs also adds to its days); only
chats that may have changed are asked about further (agent_instances), and what each worktree holds comes from
work_states. So a list of quiet chats runs no git and asks opencode once, and no released instance is woken.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from domain.agent_instances import Instances, Outcome, newest_updates
from domain.costs import Ledger, usage_of
from domain.gitcmd import Git
from domain.inventory import WorktreeInfo, all_worktrees
from domain.layout import Layout
from domain.opencode import ERROR, IDLE, INTERRUPTED
from domain.waiting import NEEDS_INPUT, Waiting, waiting_in
from domain.work_states import Held, WorkStates


def _ms(value: Any) -> datetime | None:
    return _s(value / 1000) if isinstance(value, int | float) else None


def _s(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def chat_entries(layout: Layout, git: Git, instances: Instances) -> list[dict[str, Any]]:
    """Every session and every worktree, joined: chats that wait on the person first (`needs-input`), then newest
    activity first. Why a reply failed is known only for chats that still have their worktree: old sessions without
    one accumulate and are shown as they are."""
    with ThreadPoolExecutor(1) as pool:  # opencode answers while git lists the worktrees
        asked = pool.submit(instances.opencode.sessions)
        worktrees = all_worktrees(layout, git, with_state=False)
        sessions = asked.result()
    Ledger(instances.redis).observe(sessions)
    by_session = {w.opencode_session: w for w in worktrees if w.opencode_session}
    agents = instances.look(sessions, outcomes_for=set(by_session))
    busy = {s["directory"] for s in sessions if s.get("directory") and agents.status.get(s["id"], IDLE) != IDLE}
    with ThreadPoolExecutor(1) as pool:  # only a busy chat can wait on the person; asked while git looks
        asked_waits = pool.submit(waiting_in, instances.opencode, busy, sessions)
        held = WorkStates(layout, git, instances.redis).of(worktrees, newest_updates(sessions), agents.idle)
        waits = asked_waits.result()

    def entry(session: dict[str, Any] | None, worktree: WorktreeInfo | None) -> dict[str, Any]:
        status, outcome, waiting = None, None, None
        if session is not None:
            status = agents.status.get(session["id"], IDLE)
            if status == IDLE and (outcome := agents.outcomes.get(session["id"])):
                status = outcome.status
            if waiting := waits.get(session["id"]):
                status = NEEDS_INPUT
        return _entry(session, worktree, held.get(worktree.path) if worktree else None, status, outcome, waiting)

    entries = [entry(session, by_session.get(session["id"])) for session in sessions]
    known = {s["id"] for s in sessions}
    entries += [entry(None, w) for w in worktrees if w.opencode_session not in known]
    return sorted(
        entries,
        key=lambda e: (e["status"] == NEEDS_INPUT, e["last_activity"] or datetime.min.replace(tzinfo=UTC)),
        reverse=True,
    )


def _entry(
    session: dict[str, Any] | None,
    worktree: WorktreeInfo | None,
    held: Held | None,
    status: str | None,
    outcome: Outcome | None,
    waiting: Waiting | None,
) -> dict[str, Any]:
    meta = ((session or {}).get("metadata") or {}).get("mecodes") or {}
    updated = _ms(((session or {}).get("time") or {}).get("updated"))
    touched = held.touched if held else None
    activity = [t for t in (updated, datetime.fromtimestamp(touched, UTC) if touched else None) if t]
    state = held.state if held else None
    return {
        "session_id": session["id"] if session else (worktree.opencode_session if worktree else None),
        "title": session.get("title") if session else None,
        "repo": str(worktree.repo) if worktree else meta.get("repo"),
        "branch": worktree.branch if worktree else meta.get("branch"),
        "status": status,
        "last_error": outcome.message if outcome and outcome.status == ERROR else None,
        "interruption": {"at": _s(outcome.at), "why": outcome.message}
        if outcome and outcome.status == INTERRUPTED
        else None,
        "waiting_for": asdict(waiting) if waiting else None,
        "last_activity": max(activity, default=None),
        "has_session": session is not None,
        "has_worktree": worktree is not None,
        "worktree": worktree.session_id if worktree else None,
        "path": str(worktree.path) if worktree else (session or {}).get("directory"),
        "dirty": state.dirty if state else None,
        "unpushed_commits": state.unpushed_commits if state else None,
        "disk_bytes": held.disk_bytes if held else None,
        **(usage_of(session).as_dict() if session else {"cost": None, "tokens": None}),
    }
