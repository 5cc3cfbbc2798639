"""Garbage collection that never loses work.

Per repo, under the same lock as clone and worktree jobs:
- worktrees whose folder was deleted by hand: git's metadata is pruned;
- worktrees idle longer than the limit are removed only when they hold no uncommitted changes (untracked
  files count; ignored ones don't), no commits that are on no remote branch, are not locked, their opencode
  session is not busy and no process runs inside them; anything else is kept and reported with the reason;
- folders in worktrees/ that git no longer knows are removed once nothing in them changed for the limit;
- the bare clone gets `git gc --auto`; a repo with no worktrees, no unpushed branches and unused longer
  than the (larger) repo limit is removed.
And leftovers in tmp/ from interrupted jobs are removed. A dry run decides the same and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
from redis import Redis

from domain import repo_ops
from domain.agent_instances import Instances, stop_agents_in
from domain.gitcmd import Git, GitError
from domain.inventory import (
    WorktreeInfo,
    all_worktrees,
    cached_repos,
    disk_usage,
    last_activity,
    repo_worktrees,
    work_state,
)
from domain.layout import Layout, session_from_folder
from domain.names import SLUG_SEPARATOR, InvalidName, RepoName
from domain.opencode import Opencode, OpencodeError, OpencodeUnavailable
from domain.processes import worktree_of

DAY = 86400.0


class RepoLocker(Protocol):
    def __call__(self, repo: RepoName) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Policy:
    dry_run: bool
    max_idle_days: float
    repo_idle_days: float


@dataclass
class Decision:
    kind: str  # worktree | folder | repo | staging
    name: str
    path: str
    action: str  # removed | pruned | kept; in a dry run "would be removed" | "would be pruned" | kept
    reason: str
    bytes: int = 0


@dataclass
class Report:
    policy: Policy
    decisions: list[Decision] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(d.bytes for d in self.decisions if d.action != "kept")

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for d in self.decisions:
            counts[f"{d.kind}s {d.action}"] = counts.get(f"{d.kind}s {d.action}", 0) + 1
        return {**asdict(self.policy), "counts": counts, "bytes_freed": self.bytes_freed}

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "decisions": [asdict(d) for d in self.decisions]}


def _ago(seconds: float) -> str:
    return f"{seconds / DAY:.1f} days" if seconds >= DAY else f"{seconds / 3600:.1f} hours"


def _newest_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
    return newest


def _processes_by_worktree(layout: Layout) -> dict[Path, int]:
    """The worktree folder each process with its cwd in a worktree runs in, and one such pid."""
    found: dict[Path, int] = {}
    for proc in psutil.process_iter(["pid", "cwd"]):
        if folder := worktree_of(layout, proc.info.get("cwd")):
            found.setdefault(layout.worktrees_dir / folder, proc.info["pid"])
    return found


class Collector:
    def __init__(self, layout: Layout, git: Git, redis: Redis, lock: RepoLocker, policy: Policy, opencode: Opencode):
        self.layout, self.git, self.redis, self.lock, self.policy = layout, git, redis, lock, policy
        self.opencode = opencode
        self.busy_sessions = busy_sessions(layout, git, opencode, redis)
        self.now = time.time()
        self.report = Report(policy)
        self.busy = _processes_by_worktree(layout)
        self.trash: list[Path] = []  # removed folders, deleted once the repo's lock is released
        self.prune = False  # git must forget worktrees of the repo at hand

    def run(self) -> Report:
        self._staging()
        for repo in self._repos():
            with self.lock(repo):
                self._repo(repo)
            for folder in self.trash:
                shutil.rmtree(folder, ignore_errors=True)
            self.trash.clear()
        return self.report

    def _discard(self, repo: RepoName, path: Path) -> None:
        self.trash.append(repo_ops.move_to_trash(self.layout, repo, path))
        self.prune = True

    def _decide(
        self, kind: str, name: str, path: Path, remove: bool, reason: str, size: int = 0, verb: str = "removed"
    ) -> bool:
        """Record a decision; True when the caller should carry out the removal now (not in a dry run)."""
        action = (f"would be {verb}" if self.policy.dry_run else verb) if remove else "kept"
        self.report.decisions.append(Decision(kind, name, str(path), action, reason, size if remove else 0))
        return remove and not self.policy.dry_run

    def _repos(self) -> Iterator[RepoName]:
        """Cached repos and the repos that folders in worktrees/ claim to belong to, each once whatever its case."""
        repos = {r.key: r for r in cached_repos(self.layout)}
        if self.layout.worktrees_dir.exists():
            for folder in self.layout.worktrees_dir.iterdir():
                with suppress(InvalidName):
                    repo = RepoName.from_slug(folder.name.rpartition(SLUG_SEPARATOR)[0])
                    repos.setdefault(repo.key, repo)
        yield from (repos[key] for key in sorted(repos))

    def _staging(self) -> None:
        for entry in repo_ops.stale_staging(self.layout, self.redis):
            if self._decide("staging", entry.name, entry, True, "left by an interrupted job", disk_usage(entry)):
                shutil.rmtree(entry, ignore_errors=True)

    def _repo(self, repo: RepoName) -> None:
        cached = self.layout.is_cached(repo)
        known = repo_worktrees(self.layout, self.git, repo, with_state=False) if cached else []
        kept = 0
        for info in known:
            kept += not self._worktree(repo, info)
        known_paths = {w.path for w in known}
        for folder in sorted(self.layout.worktrees_dir.glob("*")):
            if folder not in known_paths and session_from_folder(repo, folder.name):
                kept += not self._unknown_folder(repo, folder)
        if cached:
            if self.prune:
                self.git.run(["worktree", "prune"], cwd=self.layout.repo_path(repo))
            self._repo_itself(repo, kept)
        self.prune = False

    def _worktree(self, repo: RepoName, info: WorktreeInfo) -> bool:
        """Decide on one worktree git knows; True when it is (or would be) gone."""
        name = f"{repo}:{info.session_id}"
        if not info.exists:
            if self._decide("worktree", name, info.path, True, "folder deleted by hand", verb="pruned"):
                self.prune = True
            return True
        if info.locked:
            return self._decide("worktree", name, info.path, False, "locked (git worktree lock)")
        if info.path in self.busy:
            return self._decide("worktree", name, info.path, False, f"in use by process {self.busy[info.path]}")
        if info.opencode_session in self.busy_sessions:
            return self._decide("worktree", name, info.path, False, f"opencode session {info.opencode_session} is busy")
        try:
            state = work_state(self.git, info.path)
        except GitError as exc:
            return self._decide("worktree", name, info.path, False, f"git cannot read it: {exc}")
        if state.holds_work:
            return self._decide("worktree", name, info.path, False, state.describe())
        idle = self.now - (last_activity(info.path) or 0)
        if idle < self.policy.max_idle_days * DAY:
            return self._decide("worktree", name, info.path, False, f"recently used ({_ago(idle)} ago)")
        size = disk_usage(info.path)
        if self._decide("worktree", name, info.path, True, f"idle {_ago(idle)}, no unsaved work", size):
            stop_agents_in(self.opencode, self.redis, [info.path])  # a prompt may have come since the busy check
            self._discard(repo, info.path)
        return True

    def _unknown_folder(self, repo: RepoName, folder: Path) -> bool:
        idle = self.now - _newest_change(folder)
        if idle < self.policy.max_idle_days * DAY:
            return self._decide("folder", folder.name, folder, False, f"unknown to git, changed {_ago(idle)} ago")
        size = disk_usage(folder)
        if self._decide("folder", folder.name, folder, True, "unknown to git (no repo lists it)", size):
            self._discard(repo, folder)
        return True

    def _repo_itself(self, repo: RepoName, worktrees_left: int) -> None:
        path = self.layout.repo_path(repo)
        if worktrees_left:
            self._decide("repo", str(repo), path, False, f"{worktrees_left} worktree(s)")
        elif unpushed := self._unpushed_branches(path):
            self._decide("repo", str(repo), path, False, f"branches with commits on no remote: {', '.join(unpushed)}")
        else:
            markers = (path, path / "worktrees", self.layout.fetch_marker(repo))
            used = max(p.stat().st_mtime for p in markers if p.exists())
            idle = self.now - used
            if idle < self.policy.repo_idle_days * DAY:
                self._decide("repo", str(repo), path, False, f"used {_ago(idle)} ago")
            elif self._decide(
                "repo", str(repo), path, True, f"unused for {_ago(idle)}, nothing unpushed", disk_usage(path)
            ):
                repo_ops.remove_repo(self.layout, repo, [])
                return
        if not self.policy.dry_run:
            self.git.run(["gc", "--auto", "--quiet"], cwd=path, long=True)

    def _unpushed_branches(self, repo_path: Path) -> list[str]:
        branches = self.git.run(["for-each-ref", "--format=%(refname)", "refs/heads/"], cwd=repo_path).stdout.split()
        return [
            b.removeprefix("refs/heads/")
            for b in branches
            if self.git.run(["rev-list", "--count", b, "--not", "--remotes"], cwd=repo_path).stdout.strip() != "0"
        ]


def busy_sessions(layout: Layout, git: Git, opencode: Opencode, redis: Redis) -> set[str]:
    """The sessions of our worktrees that opencode is working on; none when it does not answer (then none runs)."""
    found = all_worktrees(layout, git, with_state=False)
    linked = {str(w.path) for w in found if w.opencode_session and w.exists}
    try:
        sessions = [s for s in opencode.sessions() if s.get("directory") in linked]
        statuses = Instances(opencode, redis).statuses(sessions)
    except (OpencodeUnavailable, OpencodeError):
        return set()
    return set(statuses)
