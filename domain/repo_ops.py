"""The git writes: clone, fetch, worktree add/remove, repo removal. Callers hold the repo's lock.

A clone is built in tmp/ and renamed into repos/ only when complete; a removal is renamed into tmp/ first.
Either way a folder in repos/ is always a whole, usable bare clone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from domain.gitcmd import Git, GitError, ProgressCallback
from domain.inventory import branch_holder, default_branch, find_worktree, work_state
from domain.layout import Layout
from domain.locks import slug_lock_key
from domain.names import RepoName
from domain.work import Work

REMOTE_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"
CLONE_PREFIX = "clone-"
WORKTREE_PREFIX = "worktree-"
TRASH_PREFIX = "trash-"


class Refused(RuntimeError):
    """The operation would lose work or cannot apply; the message says why."""


@dataclass(frozen=True)
class Worktree:
    path: Path
    branch: str
    head: str
    created: bool
    new_branch: bool = False  # the branch was made for this worktree


def _staging_dir(layout: Layout, prefix: str, repo: RepoName) -> Path:
    """A fresh folder in tmp/ named `<prefix><repo folder>-<random>`; start-up recovery parses the folder back."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{layout.repo_path(repo).name}-", dir=layout.tmp_dir))


def staged_repo_slug(folder_name: str) -> str | None:
    """The repo a staging folder in tmp/ belongs to (its lock guards the folder), None if not ours."""
    for prefix in (CLONE_PREFIX, WORKTREE_PREFIX, TRASH_PREFIX):
        if folder_name.startswith(prefix):
            return folder_name[len(prefix) :].rpartition("-")[0]
    return None


def stale_staging(layout: Layout, redis: Redis) -> list[Path]:
    """Folders in tmp/ that no running job is using: those of repos whose lock is free, and strays."""
    entries = sorted(layout.tmp_dir.iterdir()) if layout.tmp_dir.exists() else []
    return [e for e in entries if not redis.exists(slug_lock_key(staged_repo_slug(e.name) or ""))]


def remote_url(git: Git, repo: RepoName) -> str:
    return f"{git.settings.git_base_url}{repo.owner}/{repo.name}.git"


def clone(layout: Layout, git: Git, repo: RepoName, progress: ProgressCallback) -> None:
    """Bare clone whose branches live only in refs/remotes/origin/*: refs/heads/* is left to sessions."""
    staging = _staging_dir(layout, CLONE_PREFIX, repo)
    try:
        target = staging / "repo.git"
        git.run_with_progress(
            [
                "clone",
                "--bare",
                "--progress",
                "-c",
                f"remote.origin.fetch={REMOTE_REFSPEC}",
                "--",
                remote_url(git, repo),
                str(target),
            ],
            progress,
        )
        heads = git.run(["for-each-ref", "--format=delete %(refname)", "refs/heads/"], cwd=target).stdout
        if heads:
            git.run(["update-ref", "--stdin"], cwd=target, stdin=heads)
        _touch(target / layout.fetch_marker(repo).name)
        os.rename(target, layout.repo_path(repo))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(layout: Layout, git: Git, repo: RepoName, progress: ProgressCallback) -> None:
    git.run_with_progress(["fetch", "--prune", "--progress", "origin"], progress, cwd=layout.repo_path(repo))
    _touch(layout.fetch_marker(repo))


def fetch_age(layout: Layout, repo: RepoName) -> float:
    try:
        return time.time() - layout.fetch_marker(repo).stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _touch(path: Path) -> None:
    path.touch()
    os.utime(path)


def _ref_exists(git: Git, repo_path: Path, ref: str) -> bool:
    try:
        git.run(["show-ref", "--verify", "--quiet", ref], cwd=repo_path)
    except GitError:
        return False
    return True


def add_worktree(layout: Layout, git: Git, repo: RepoName, session_id: str, branch: str | None) -> Worktree:
    """A worktree for the session. Given branch: the local one, else the remote one (tracked), else a new
    branch of that name from the default branch. No branch: `mecodes/<session_id>`, resumed if it exists."""
    repo_path = layout.repo_path(repo)
    path = layout.worktree_path(repo, session_id)
    existing = find_worktree(layout, git, repo, session_id)
    if existing is not None and existing.exists:
        if branch is not None and existing.branch != branch:
            raise Refused(f"session {session_id} already has a worktree on branch {existing.branch}, not {branch}")
        return Worktree(path, existing.branch or "", existing.head or "", created=False)
    if existing is not None:
        git.run(["worktree", "prune"], cwd=repo_path)  # registered but its folder is gone
    if path.exists():
        raise Refused(f"{path.name} exists but is not a worktree of {repo}; delete it or run GC")

    name = branch or f"mecodes/{session_id}"
    if (holder := branch_holder(layout, git, repo, name, session_id)) is not None:
        # Checked here too, under the lock: the API's check may race another request (and git's own refusal
        # would show a server path).
        raise Refused(f"branch {name} is already checked out in the worktree of chat {holder.chat}")
    if _ref_exists(git, repo_path, f"refs/heads/{name}"):
        how = [name]
    elif _ref_exists(git, repo_path, f"refs/remotes/origin/{name}"):
        how = ["--track", "-b", name, f"refs/remotes/origin/{name}"]
    else:
        base = default_branch(repo_path)
        if base is None or not _ref_exists(git, repo_path, f"refs/remotes/origin/{base}"):
            raise Refused(f"{repo} has no default branch to start from (is it empty?)")
        how = ["--no-track", "-b", name, f"refs/remotes/origin/{base}"]
    # Check out in tmp/ and move into place when complete: a killed job leaves nothing in worktrees/.
    staging = _staging_dir(layout, WORKTREE_PREFIX, repo) / path.name
    try:
        options, start = how[:-1], how[-1]
        git.run(["worktree", "add", *options, str(staging), start], cwd=repo_path, long=True)
        git.run(["worktree", "move", str(staging), str(path)], cwd=repo_path)
    finally:
        if staging.exists():  # cut short: leave no half-made worktree registered
            discard_worktree_folder(layout, git, repo, staging)
        shutil.rmtree(staging.parent, ignore_errors=True)
    head = git.run(["rev-parse", "HEAD"], cwd=path).stdout.strip()
    return Worktree(path, name, head, created=True, new_branch="-b" in how)


def undo_worktree(layout: Layout, git: Git, repo: RepoName, worktree: Worktree) -> None:
    """Take back a worktree just made (a chat that failed later): the folder, and its branch if it was new."""
    discard_worktree_folder(layout, git, repo, worktree.path)
    if worktree.new_branch:
        git.run(["branch", "-D", worktree.branch], cwd=layout.repo_path(repo))


def remove_worktree(layout: Layout, git: Git, repo: RepoName, session_id: str, force: bool) -> dict[str, object]:
    repo_path = layout.repo_path(repo)
    info = find_worktree(layout, git, repo, session_id)
    if info is None:
        raise Refused(f"no worktree for session {session_id} of {repo}")
    if not info.exists:
        git.run(["worktree", "prune"], cwd=repo_path)
        return {"path": str(info.path), "branch": info.branch, "removed": "stale entry pruned"}
    if not force:
        state = work_state(git, info.path)
        if state.holds_work:
            raise Refused(f"worktree of session {session_id} holds {state.describe()}; use force=true to discard")
    discard_worktree_folder(layout, git, repo, info.path)
    return {"path": str(info.path), "branch": info.branch, "removed": "worktree removed, branch kept"}


def move_to_trash(layout: Layout, repo: RepoName, path: Path) -> Path:
    """Move a folder out of the way atomically (into tmp/); returns the trash folder to delete later."""
    trash = _staging_dir(layout, TRASH_PREFIX, repo)
    os.rename(path, trash / path.name)
    return trash


def discard_worktree_folder(layout: Layout, git: Git, repo: RepoName, path: Path) -> None:
    """Move the folder out of the way, let git forget it (if the repo is cached), delete it."""
    trash = move_to_trash(layout, repo, path)
    if layout.is_cached(repo):
        git.run(["worktree", "prune"], cwd=layout.repo_path(repo))
    shutil.rmtree(trash, ignore_errors=True)


def remove_repo(layout: Layout, repo: RepoName, worktree_paths: list[Path]) -> None:
    trash = _staging_dir(layout, TRASH_PREFIX, repo)
    os.rename(layout.repo_path(repo), trash / repo.slug)
    for i, path in enumerate(worktree_paths):
        if path.exists():
            os.rename(path, trash / f"worktree-{i}")
    shutil.rmtree(trash, ignore_errors=True)


def ensure_cached(work: Work, repo: RepoName, max_age: float) -> str:
    """Clone when missing, fetch when older than `max_age` seconds. Returns what was done."""
    if not work.layout.is_cached(repo):
        work.progress("cloning")
        clone(work.layout, work.git, repo, work.git_progress("cloning"))
        return "cloned"
    if fetch_age(work.layout, repo) < max_age:
        return "up to date"
    work.progress("fetching")
    fetch(work.layout, work.git, repo, work.git_progress("fetching"))
    return "fetched"
