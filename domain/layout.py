"""Where things live under the data root.

repos/owner__name                 bare clones (a folder here means "cached": it is only ever moved in complete)
worktrees/owner__name__<session>  one worktree per session
tmp/                              clones in progress and folders being deleted (same filesystem: rename is atomic)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from domain.names import SLUG_SEPARATOR, RepoName

FETCH_MARKER = "mecodes-last-fetch"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def repos_dir(self) -> Path:
        return self.root / "repos"

    @property
    def worktrees_dir(self) -> Path:
        return self.root / "worktrees"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def ensure(self) -> None:
        for folder in (self.repos_dir, self.worktrees_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def repo_path(self, repo: RepoName) -> Path:
        return self._inside(self.repos_dir, repo.slug)

    def worktree_path(self, repo: RepoName, session_id: str) -> Path:
        return self._inside(self.worktrees_dir, worktree_folder(repo, session_id))

    def fetch_marker(self, repo: RepoName) -> Path:
        return self.repo_path(repo) / FETCH_MARKER

    def is_cached(self, repo: RepoName) -> bool:
        return (self.repo_path(repo) / "HEAD").is_file()

    @staticmethod
    def _inside(parent: Path, child: str) -> Path:
        path = parent / child
        # Names are validated before they get here; this is the last line of defence.
        if path.parent != parent or child in {"", ".", ".."} or "/" in child:
            raise ValueError(f"refusing path outside {parent}: {child!r}")
        return path


def worktree_folder(repo: RepoName, session_id: str) -> str:
    return f"{repo.slug}{SLUG_SEPARATOR}{session_id}"


def session_from_folder(repo: RepoName, folder: str) -> str | None:
    """The session id of a worktree folder of `repo`, or None when the folder is not one of its."""
    prefix = worktree_folder(repo, "")
    return folder[len(prefix) :] if folder.startswith(prefix) and len(folder) > len(prefix) else None
