"""What each worktree holds (uncommitted changes, commits on no remote branch, bytes on disk), remembered in Redis so
that the chat list does not run git in every worktree on every refresh.

A remembered state is used while nothing that could change it has moved since it was taken: its stamp (the
worktree's HEAD, `inventory.last_activity`'s mtimes of the folder and of git's index, HEAD and reflog for it, the
repo's last fetch, and the newest update of the chat's opencode sessions) is the same, and the chat's agent was idle
when it was taken (any new turn updates its session). So a busy chat is looked at afresh on every list, and a quiet
one once. What changes around the agent (a file written by a process it left running) is caught by `refresh`, which
the worker runs every MECODES_WORK_STATE_MAX_AGE seconds. Jobs that change what git knows without touching the
worktree (a push) forget the state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from domain.gitcmd import Git, GitError
from domain.inventory import STATE_CHECKS_IN_PARALLEL, WorkState, WorktreeInfo, disk_usage, last_activity, work_state
from domain.layout import Layout

KEY = "mecodes:worktrees:held"  # worktree path -> JSON: stamp, idle, dirty, unpushed, disk_bytes, disk_at
DISK_USAGE_MAX_AGE = 60  # seconds: the walk costs about 20 ms per 3,000 files, and the figure is only shown


@dataclass(frozen=True)
class Held:
    state: WorkState | None  # None when git cannot read the worktree
    disk_bytes: int
    touched: float | None  # inventory.last_activity, as of this list


class WorkStates:
    def __init__(self, layout: Layout, git: Git, redis: Redis):
        self.layout = layout
        self.git = git
        self.redis = redis

    def of(self, worktrees: Iterable[WorktreeInfo], newest: Mapping[str, int], idle: set[str]) -> dict[Path, Held]:
        """What each existing worktree holds. `newest`: directory → newest update of its sessions; `idle`: the
        directories whose sessions are all idle now (looked at before this call)."""
        worktrees = list(worktrees)
        remembered = self._remembered()
        fetched = {repo: _mtime(self.layout.fetch_marker(repo)) for repo in {w.repo for w in worktrees}}
        found: dict[Path, Held] = {}
        to_look: list[tuple[WorktreeInfo, list[Any], dict[str, Any] | None]] = []
        for worktree in worktrees:
            if not worktree.exists:
                continue
            path = str(worktree.path)
            # [HEAD, last activity, the repo's last fetch, the newest update of the chat's sessions]
            stamp = [worktree.head, last_activity(worktree.path), fetched[worktree.repo], newest.get(path)]
            record = remembered.get(path)
            if record and record["idle"] and record["stamp"] == stamp:
                found[worktree.path] = _held(record)
            else:
                to_look.append((worktree, stamp, record))
        with ThreadPoolExecutor(STATE_CHECKS_IN_PARALLEL) as pool:
            looked = list(pool.map(lambda item: self._look(*item, idle=str(item[0].path) in idle), to_look))
        fresh = {str(worktree.path): record for (worktree, _, _), record in zip(to_look, looked, strict=True)}
        found |= {Path(path): _held(record) for path, record in fresh.items()}
        self._store(fresh, gone=set(remembered) - {str(w.path) for w in worktrees})
        return found

    def refresh(self, worktrees: Iterable[WorktreeInfo]) -> int:
        """Look again at every remembered state of these worktrees (the periodic job); returns how many."""
        remembered = self._remembered()
        due = [(w, remembered[str(w.path)]) for w in worktrees if w.exists and str(w.path) in remembered]
        with ThreadPoolExecutor(STATE_CHECKS_IN_PARALLEL) as pool:
            looked = list(pool.map(lambda item: self._look(item[0], item[1]["stamp"], None, item[1]["idle"]), due))
        self._store({str(w.path): record for (w, _), record in zip(due, looked, strict=True)}, gone=set())
        return len(due)

    def forget(self, path: Path) -> None:
        """After a job changed what the worktree holds in a way its stamp does not show."""
        self.redis.hdel(KEY, str(path))

    def _look(self, worktree: WorktreeInfo, stamp: list[Any], previous: dict[str, Any] | None, idle: bool) -> dict:
        try:
            state: WorkState | None = work_state(self.git, worktree.path)
        except GitError:
            state = None
        now = time.time()
        if previous and now - previous["disk_at"] < DISK_USAGE_MAX_AGE:
            disk_bytes, disk_at = previous["disk_bytes"], previous["disk_at"]
        else:
            disk_bytes, disk_at = disk_usage(worktree.path), now
        return {
            "stamp": stamp,
            "idle": idle and state is not None,
            "dirty": state.dirty if state else None,
            "unpushed": state.unpushed_commits if state else None,
            "disk_bytes": disk_bytes,
            "disk_at": disk_at,
        }

    def _remembered(self) -> dict[str, dict[str, Any]]:
        try:
            return {k.decode(): json.loads(v) for k, v in self.redis.hgetall(KEY).items()}
        except RedisError:
            return {}

    def _store(self, records: dict[str, dict[str, Any]], gone: set[str]) -> None:
        try:
            with self.redis.pipeline() as pipe:
                if records:
                    pipe.hset(KEY, mapping={path: json.dumps(record) for path, record in records.items()})
                if gone:
                    pipe.hdel(KEY, *gone)
                pipe.execute()
        except RedisError:
            pass  # not remembered: the next list looks again


def _held(record: dict[str, Any]) -> Held:
    state = None if record["dirty"] is None else WorkState(record["dirty"], record["unpushed"])
    return Held(state, record["disk_bytes"], touched=record["stamp"][1])  # the stamp's last activity


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
