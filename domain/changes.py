"""What git sees in a chat's worktree against the branch it started from: the uncommitted changes and the chat's
own commits, file by file, a page at a time, each file with its patch (capped).

The base is origin's default branch (`refs/remotes/origin/<default>` in the bare clone): every new chat branch
starts from it and its pull request goes against it, so the chat's commits are those on HEAD and not on it (the
commits a pull request would show). Uncommitted changes are HEAD against the working tree, untracked files
included: git reads them through a throw-away copy of the index to which every untracked file is added as
intent-to-add (`git add -N`), so a file moved with a shell `mv` is paired as a rename, and new files get line
counts and patches like any other. Nothing in the repo is written: `--no-optional-locks`, and the copy lives in a
temporary folder.

A page lists `PAGE_FILES` files, the uncommitted ones first, then each commit's, newest first (a commit without
files takes a place of its own). Each file's patch is cut at `PATCH_CAP` characters (`truncated`), a page's patches
stay under `ANSWER_CAP` (a file whose patch would not fit is `omitted`: ask for it alone), files over `BIG_FILE` are
diffed as binary (git would hold both sides in memory), and only the newest `MAX_COMMITS` commits are listed.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from domain.gitcmd import Git, GitError
from domain.inventory import WorktreeInfo, default_branch
from domain.layout import Layout

PAGE_FILES = 25
MAX_COMMITS = 100
PATCH_CAP = 256 * 1024
ANSWER_CAP = 1024 * 1024
BIG_FILE = 8 * 1024 * 1024
READ_CAP = 4 * 1024 * 1024  # of git's output for one group's files on a page: what a page holds in memory at most

STATUS = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type-changed",
    "U": "unmerged",
}
# Read-only whatever the worktree's own config says (the agent may write it): no fsmonitor hook, no external diff or
# textconv program, big files as binary, paths taken literally (a file named `:x` is no pathspec magic).
_READ = [
    "--no-optional-locks",
    "--literal-pathspecs",
    "-c",
    "core.fsmonitor=false",
    "-c",
    f"core.bigFileThreshold={BIG_FILE}",
    "-c",
    "core.quotePath=false",
]
_DIFF = ["-M", "--no-color", "--no-ext-diff", "--no-textconv"]
_HEADER = "\x1e"  # starts a commit in `git log` output; its fields are split by \x1f
_NUMSTAT = re.compile(r"(\d+|-)\t(\d+|-)\t")
_FILE_HEADER = re.compile(r"^diff --git ", re.MULTILINE)  # content lines start with ' ', '+' or '-': never this
_BIG = {"binary": True, "insertions": None, "deletions": None, "patch": None, "truncated": False, "omitted": False}
_OMITTED = {"binary": False, "insertions": None, "deletions": None, "patch": None, "truncated": False, "omitted": True}


class NoSuchChange(LookupError):
    """The file or commit asked for is not among the chat's changes; the message says which."""


@dataclass(frozen=True)
class FileChange:
    path: str
    old_path: str | None  # renames and copies
    letter: str  # git's status letter: A, M, D, R, C, T, U
    old_mode: str
    new_mode: str

    def view(self) -> dict[str, Any]:
        mode_changed = self.old_mode != self.new_mode and "000000" not in (self.old_mode, self.new_mode)
        return {
            "path": self.path,
            "old_path": self.old_path,
            "status": STATUS.get(self.letter, "changed"),
            "letter": self.letter,
            "old_mode": self.old_mode if mode_changed else None,
            "new_mode": self.new_mode if mode_changed else None,
        }


@dataclass(frozen=True)
class Commit:
    hash: str
    subject: str
    author: str
    time: datetime

    def view(self) -> dict[str, Any]:
        return {"hash": self.hash, "subject": self.subject, "author": self.author, "time": self.time}


@dataclass(frozen=True)
class Group:
    commit: Commit | None  # None: the uncommitted changes
    files: list[FileChange]

    def view(self) -> dict[str, Any]:
        kind = "commit" if self.commit else "uncommitted"
        return {"kind": kind, "commit": self.commit.view() if self.commit else None, "files_total": len(self.files)}


@dataclass(frozen=True)
class Reading:
    """One look at the worktree: where it is and the environment that shows git the throw-away index."""

    git: Git
    worktree: Path
    env: dict[str, str]


def changes_page(layout: Layout, git: Git, info: WorktreeInfo, page: int) -> dict[str, Any]:
    """Page `page` (from 1) of the chat's changes, each file with its patch; past the last page, no groups."""
    base = _base(layout, git, info)
    with _reading(git, info.path) as reading:
        uncommitted = Group(None, _uncommitted(reading))
        commits, more = _commits(reading, base)
        groups = ([uncommitted] if uncommitted.files else []) + commits
        places = [(g, f) for g in groups for f in (g.files or [None])]  # only a commit can be without files
        shown = places[(page - 1) * PAGE_FILES : page * PAGE_FILES]
        views: dict[int, dict[str, Any]] = {}
        for group, _ in shown:
            views.setdefault(id(group), {**group.view(), "files": []})
        used = 0  # characters of patches on the page so far
        for group in {id(g): g for g, _ in shown}.values():
            changes = [f for g, f in shown if g is group and f is not None]
            patches = _patches(reading, group, changes) if used < ANSWER_CAP else [_OMITTED] * len(changes)
            for change, patch in zip(changes, patches, strict=True):
                size = len(patch["patch"] or "")
                if used + size > ANSWER_CAP:  # left for `file_change`; a smaller one after it may still fit
                    patch = {**patch, "patch": None, "truncated": False, "omitted": True}
                else:
                    used += size
                views[id(group)]["files"].append({**change.view(), **patch})
    pages = max(1, math.ceil(len(places) / PAGE_FILES))
    return {
        "session_id": info.chat,
        "repo": str(info.repo),
        "branch": info.branch,
        "base": base.removeprefix("refs/remotes/") if base else None,
        "head": info.head,
        "files_total": sum(len(g.files) for g in groups),
        "commits_total": len(commits),
        "commits_more": more,
        "page": page,
        "pages": pages,
        "next_page": page + 1 if page < pages else None,
        "page_size": PAGE_FILES,
        "groups": list(views.values()),
    }


def file_change(layout: Layout, git: Git, info: WorktreeInfo, path: str, commit: str | None) -> dict[str, Any]:
    """One file of the uncommitted changes (`commit` None) or of one of the chat's commits, with its patch."""
    with _reading(git, info.path, index=commit is None) as reading:
        if commit is None:
            group = Group(None, _uncommitted(reading))
        else:
            found = [g for g in _commits(reading, _base(layout, git, info))[0] if g.commit and g.commit.hash == commit]
            if not found:
                raise NoSuchChange(f"commit {commit} is not one of this chat's commits")
            group = found[0]
        change = next((f for f in group.files if f.path == path), None)
        if change is None:
            why = f"commit {commit} did not change {path}" if commit else f"{path} has no uncommitted change"
            raise NoSuchChange(why)
        return {**group.view(), "file": {**change.view(), **_patches(reading, group, [change])[0]}}


def _base(layout: Layout, git: Git, info: WorktreeInfo) -> str | None:
    """origin's default branch, when the bare clone has it."""
    branch = default_branch(layout.repo_path(info.repo))
    if branch is None:
        return None
    ref = f"refs/remotes/origin/{branch}"
    try:
        git.run(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=info.path)
    except GitError:
        return None
    return ref


@contextlib.contextmanager
def _reading(git: Git, worktree: Path, index: bool = True) -> Iterator[Reading]:
    """A throw-away copy of the worktree's index with its untracked files added as intent-to-add."""
    with tempfile.TemporaryDirectory(prefix="mecodes-changes-") as folder:
        env = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
        if index:
            with contextlib.suppress(FileNotFoundError):  # a worktree without an index yet: git starts one
                shutil.copyfile(_index_of(worktree), env["GIT_INDEX_FILE"])
            git.run([*_READ, "add", "--intent-to-add", "--ignore-errors", "--", "."], cwd=worktree, env=env)
        yield Reading(git, worktree, env)


def _index_of(worktree: Path) -> Path:
    dotgit = worktree / ".git"
    if dotgit.is_dir():
        return dotgit / "index"
    return worktree / dotgit.read_text().strip().removeprefix("gitdir: ") / "index"


def _uncommitted(reading: Reading) -> list[FileChange]:
    out = reading.git.run([*_READ, "diff", "HEAD", "--raw", "-z", *_DIFF], cwd=reading.worktree, env=reading.env)
    tokens = out.stdout.split("\0")
    files, i = [], 0
    while i < len(tokens):
        if tokens[i].lstrip("\n").startswith(":"):
            change, i = _raw_entry(tokens, i)
            files.append(change)
        else:
            i += 1
    return files


def _commits(reading: Reading, base: str | None) -> tuple[list[Group], bool]:
    """The chat's commits, newest first, each with its files (against its first parent); whether older ones were
    left out."""
    since = ["--not", base] if base else ["--not", "--remotes"]
    args = [
        *_READ,
        "log",
        "-z",
        f"--format={_HEADER}%H%x1f%an%x1f%aI%x1f%s",
        "--raw",
        *_DIFF,
        "--diff-merges=first-parent",
        f"--max-count={MAX_COMMITS + 1}",
        "HEAD",
        *since,
        "--",
    ]
    tokens = reading.git.run(args, cwd=reading.worktree).stdout.split("\0")
    groups: list[Group] = []
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip("\n")
        if token.startswith(_HEADER):
            sha, author, when, subject = token[1:].split("\x1f", 3)
            groups.append(Group(Commit(sha, subject, author, datetime.fromisoformat(when)), []))
            i += 1
        elif token.startswith(":") and groups:
            change, i = _raw_entry(tokens, i)
            groups[-1].files.append(change)
        else:
            i += 1
    return groups[:MAX_COMMITS], len(groups) > MAX_COMMITS


def _raw_entry(tokens: list[str], i: int) -> tuple[FileChange, int]:
    """`:old_mode new_mode old_sha new_sha status` then one path (two for renames and copies), from `--raw -z`."""
    old_mode, new_mode, _, _, status = tokens[i].lstrip("\n")[1:].split(" ")[:5]
    letter = status[:1]
    if letter in "RC":
        return FileChange(tokens[i + 2], tokens[i + 1], letter, old_mode, new_mode), i + 3
    return FileChange(tokens[i + 1], None, letter, old_mode, new_mode), i + 2


def _patches(reading: Reading, group: Group, changes: list[FileChange]) -> list[dict[str, Any]]:
    """Each file's line counts and patch (the hunks only: the file's header is in its other fields), from one git
    command for them all whose output is read up to READ_CAP; a file it did not reach is `omitted`."""
    # A big new file would cost git a hash of it for the patch's `index` line only to say "binary".
    big = {c.path for c in changes if group.commit is None and _size(reading.worktree / c.path) > BIG_FILE}
    asked = [change for change in changes if change.path not in big]
    if not asked:
        return [_BIG] * len(changes)
    paths = [path for change in asked for path in filter(None, (change.old_path, change.path))]
    if group.commit is None:
        what, revision = ["diff"], "HEAD"
    else:
        what, revision = ["show", "--format=", "--diff-merges=first-parent"], group.commit.hash
    args = [*_READ, *what, *_DIFF, "-z", "--numstat", "-p", revision, "--", *paths]
    out, cut = reading.git.read_capped(args, READ_CAP, cwd=reading.worktree, env=reading.env)
    counts, pieces = _numstat_and_pieces(out)
    found = {path: (numbers, pieces[i] if i < len(pieces) else None) for i, (path, numbers) in enumerate(counts)}
    last = counts[len(pieces) - 1][0] if cut and pieces else None  # the file git's output was cut in
    views = []
    for change in changes:
        if change.path in big:
            views.append(_BIG)
            continue
        numbers, piece = found.get(change.path, (None, None))
        binary = numbers == ["-", "-"]
        if piece is None:  # not reached (cut), or no longer changed
            views.append({**_OMITTED, "omitted": cut, **_counted(numbers)})
            continue
        start = piece.find("\n@@")
        hunks = piece[start + 1 :] if start >= 0 and not binary else ""
        truncated = change.path == last or len(hunks) > PATCH_CAP
        if truncated:
            hunks = hunks[:PATCH_CAP]
            hunks = hunks[: hunks.rfind("\n") + 1]
        views.append(
            {
                "binary": binary,
                **_counted(numbers),
                "patch": hunks or None,
                "truncated": truncated,
                "omitted": False,
            }
        )
    return views


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _counted(numbers: list[str] | None) -> dict[str, int | None]:
    """Lines added and removed, from numstat (none for a binary file, or one git no longer lists)."""
    if numbers is None or numbers == ["-", "-"]:
        return {"insertions": None, "deletions": None}
    return {"insertions": int(numbers[0]), "deletions": int(numbers[1])}


def _numstat_and_pieces(out: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """`--numstat -z -p` output split: each file's path (the new one) and counts, in order, then each file's patch
    text after its `diff --git ` line, in the same order."""
    counts, pos = [], 0
    while match := _NUMSTAT.match(out, pos):
        start = match.end()
        if out.startswith("\0", start):  # a rename or copy: \0old\0new\0
            start = out.find("\0", start + 1) + 1
        end = out.find("\0", start)
        if start <= 0 or end < 0:  # cut short
            break
        counts.append((out[start:end], [match[1], match[2]]))
        pos = end + 1
    return counts, _FILE_HEADER.split(out[pos:].lstrip("\0"))[1:]
