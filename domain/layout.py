"""Where things live under the data root.

repos/owner__name                 bare clones (a folder here means "cached": it is only ever moved in complete)
worktrees/owner__name__<session>  one worktree per session
                                  (GitHub's names are case-insensitive: one folder per repo, named as first asked,
                                  found whatever the case it is asked in; its worktrees' folders spell it the same)
tmp/                              clones in progress and folders being deleted (same filesystem: rename is atomic)
"""

from __future__ import annotations

import os
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
        """The repo's folder in repos/: the one already there whatever its case, else one spelt as asked."""
        path = self._inside(self.repos_dir, repo.slug)
        if path.exists():
            return path
        try:
            found = next((n for n in sorted(os.listdir(self.repos_dir)) if n.lower() == repo.key), None)
        except FileNotFoundError:
            found = None
        return self._inside(self.repos_dir, found) if found else path

    def worktree_path(self, repo: RepoName, session_id: str) -> Path:
        """The session's worktree folder, named after the repo's folder (so spelt as it is)."""
        return self._inside(self.worktrees_dir, f"{self.repo_path(repo).name}{SLUG_SEPARATOR}{session_id}")

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


def session_from_folder(repo: RepoName, folder: str) -> str | None:
    """The session id of a worktree folder of `repo` (its repo part in any case), or None when it is not one of its.
    Session ids hold no `__`, so the last one splits the folder name."""
    slug, separator, session_id = folder.rpartition(SLUG_SEPARATOR)
    return session_id if separator and session_id and slug.lower() == repo.key else None
