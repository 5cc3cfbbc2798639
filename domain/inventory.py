"""Read-only views of the data root: cached repos, their worktrees and the work held in them.

The filesystem is the source of truth; these functions only read it (plus short, local, read-only git
queries), so both the API and the worker may call them.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from domain.gitcmd import Git, GitError
from domain.layout import Layout, session_from_folder
from domain.names import InvalidName, RepoName

STATE_CHECKS_IN_PARALLEL = 4
SESSION_LINK = "mecodes-opencode-session"


@dataclass(frozen=True)
class RepoInfo:
    repo: RepoName
    path: Path
    default_branch: str | None
    size_bytes: int
    last_fetch: datetime | None
    worktree_count: int


@dataclass(frozen=True)
class WorkState:
    dirty: bool
    unpushed_commits: int

    @property
    def holds_work(self) -> bool:
        return self.dirty or self.unpushed_commits > 0

    def describe(self) -> str:
        reasons = []
        if self.dirty:
            reasons.append("uncommitted changes")
        if self.unpushed_commits:
            reasons.append(f"{self.unpushed_commits} commit(s) not on any remote branch")
        return " and ".join(reasons) or "no unsaved work"


@dataclass(frozen=True)
class WorktreeInfo:
    repo: RepoName
    session_id: str
    path: Path
    branch: str | None
    head: str | None
    exists: bool
    locked: bool
    created_at: datetime | None
    state: WorkState | None  # None when the folder is gone or git cannot read it
    opencode_session: str | None  # the opencode session this worktree belongs to (link kept on disk)

    def belongs_to(self, session_id: str) -> bool:
        """Whether `session_id` names it: its own session label or the opencode session linked to it."""
        return session_id in (self.session_id, self.opencode_session)

    @property
    def chat(self) -> str:
        """Whose it is, for messages: its chat's (opencode) session id, else its own session label."""
        return self.opencode_session or self.session_id


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under `path` (like `du -s`), symlinks not followed, hard links counted once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
    return total


def last_activity(worktree: Path) -> float | None:
    """When the worktree was last touched through git or had entries added or removed (epoch seconds).

    Reads mtimes only: the folder, its `.git` file, and the index, HEAD and reflog of its admin folder in the
    bare repo. Edits to tracked files are not seen here, but they make the worktree dirty, which GC checks.
    (Plain os calls: the chat list reads this for every worktree on every refresh.)
    """
    folder = os.fspath(worktree)
    dotgit = os.path.join(folder, ".git")
    candidates = [folder, dotgit]
    try:
        with open(dotgit) as link:
            gitdir = link.read().strip().removeprefix("gitdir: ")
    except OSError:
        gitdir = ""
    if gitdir:
        candidates += [os.path.join(gitdir, name) for name in ("index", "HEAD", os.path.join("logs", "HEAD"))]
    times = []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            times.append(os.stat(candidate).st_mtime)
    return max(times, default=None)


def default_branch(repo_path: Path) -> str | None:
    """The branch the remote's HEAD pointed at when cloned, read from the bare repo's HEAD file."""
    try:
        head = (repo_path / "HEAD").read_text().strip()
    except OSError:
        return None
    prefix = "ref: refs/heads/"
    return head[len(prefix) :] if head.startswith(prefix) else None


def cached_repos(layout: Layout) -> list[RepoName]:
    repos = []
    try:
        entries = sorted(os.listdir(layout.repos_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            repo = RepoName.from_slug(entry)
        except InvalidName:
            continue
        if layout.is_cached(repo):
            repos.append(repo)
    return repos


def _worktree_records(git: Git, repo_path: Path) -> list[dict[str, str]]:
    out = git.run(["worktree", "list", "--porcelain"], cwd=repo_path).stdout
    records = []
    for block in out.strip().split("\n\n"):
        record: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            record[key] = value
        if "worktree" in record and "bare" not in record:
            records.append(record)
    return records


def work_state(git: Git, worktree: Path) -> WorkState:
    # --no-optional-locks: looking must not rewrite the index (its mtime tells GC when a worktree was last used)
    status = git.run(["--no-optional-locks", "status", "--porcelain", "--untracked-files=normal"], cwd=worktree).stdout
    unpushed = git.run(["rev-list", "--count", "HEAD", "--not", "--remotes"], cwd=worktree).stdout
    return WorkState(dirty=bool(status.strip()), unpushed_commits=int(unpushed.strip() or 0))


def _state_or_none(git: Git, worktree: Path) -> WorkState | None:
    try:
        return work_state(git, worktree)
    except GitError:
        return None


def repo_worktrees(layout: Layout, git: Git, repo: RepoName, with_state: bool = True) -> list[WorktreeInfo]:
    """The worktrees git knows for `repo` that live in our worktrees folder (their work state checked in
    parallel: each check is two short git processes)."""
    records = []
    for record in _worktree_records(git, layout.repo_path(repo)):
        path = Path(record["worktree"])
        session_id = session_from_folder(repo, path.name) if path.parent == layout.worktrees_dir else None
        if session_id is not None:
            records.append((record, path, session_id, (path / ".git").exists()))
    checked = [path for _, path, _, exists in records if exists and with_state]
    states: dict[Path, WorkState | None] = {}
    if checked:
        with ThreadPoolExecutor(STATE_CHECKS_IN_PARALLEL) as pool:
            states = dict(zip(checked, pool.map(lambda p: _state_or_none(git, p), checked), strict=True))
    result = []
    for record, path, session_id, exists in records:
        state = states.get(path)
        branch = record.get("branch", "").removeprefix("refs/heads/") or None
        result.append(
            WorktreeInfo(
                repo=repo,
                session_id=session_id,
                path=path,
                branch=branch,
                head=record.get("HEAD"),
                exists=exists,
                locked="locked" in record,
                created_at=_mtime(path / ".git"),
                state=state,
                opencode_session=linked_session(layout, repo, path),
            )
        )
    return result


def all_worktrees(layout: Layout, git: Git, with_state: bool = True) -> list[WorktreeInfo]:
    """Every repo's worktrees (the repos asked in parallel: each is a short git process)."""

    def of_repo(repo: RepoName) -> list[WorktreeInfo]:
        try:
            return repo_worktrees(layout, git, repo, with_state)
        except GitError:
            if layout.is_cached(repo):
                raise
            return []  # removed while we looked: nothing to list

    with ThreadPoolExecutor(STATE_CHECKS_IN_PARALLEL) as pool:
        return [worktree for found in pool.map(of_repo, cached_repos(layout)) for worktree in found]


def session_link(layout: Layout, repo: RepoName, worktree: Path) -> Path:
    """Where the worktree's opencode session id is kept: in the worktree's own admin folder in the bare repo,
    so it lives and goes with the worktree, and the agent working in it never sees it."""
    return layout.repo_path(repo) / "worktrees" / worktree.name / SESSION_LINK


def linked_session(layout: Layout, repo: RepoName, worktree: Path) -> str | None:
    try:
        return session_link(layout, repo, worktree).read_text().strip() or None
    except OSError:
        return None


def find_worktree(layout: Layout, git: Git, repo: RepoName, session_id: str) -> WorktreeInfo | None:
    """The worktree of `repo` for `session_id`: its own label, or the opencode session linked to it."""
    if not layout.is_cached(repo):
        return None
    return next((w for w in repo_worktrees(layout, git, repo, with_state=False) if w.belongs_to(session_id)), None)


def branch_holder(layout: Layout, git: Git, repo: RepoName, branch: str, session_id: str) -> WorktreeInfo | None:
    """The worktree of another session that has `branch` checked out (git allows a branch in one worktree only)."""
    if not layout.is_cached(repo):
        return None
    worktrees = repo_worktrees(layout, git, repo, with_state=False)
    return next((w for w in worktrees if w.branch == branch and not w.belongs_to(session_id)), None)


def find_by_opencode_session(layout: Layout, git: Git, session_id: str) -> WorktreeInfo | None:
    return next((w for w in all_worktrees(layout, git, with_state=False) if w.opencode_session == session_id), None)


def commits_of_its_own(git: Git, worktree: Path, base_branch: str) -> int:
    """Commits on the worktree's HEAD that are not on origin's `base_branch`."""
    out = git.run(["rev-list", "--count", "HEAD", "--not", f"refs/remotes/origin/{base_branch}"], cwd=worktree)
    return int(out.stdout.strip() or 0)


def repo_info(layout: Layout, git: Git, repo: RepoName) -> RepoInfo:
    path = layout.repo_path(repo)
    return RepoInfo(
        repo=repo,
        path=path,
        default_branch=default_branch(path),
        size_bytes=disk_usage(path),
        last_fetch=_mtime(layout.fetch_marker(repo)),
        worktree_count=len(repo_worktrees(layout, git, repo, with_state=False)),
    )
