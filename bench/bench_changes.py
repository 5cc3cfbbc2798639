"""Benchmark of a chat's changes, `GET /admin/chats/{id}/changes` (the phone's Changes tab), on a worktree with many
changes, beside raw git printing every patch once.

Generates an origin repo (`--files`, default 3,000), clones it and makes a chat's worktree with the domain's own
functions (as the worker does: bare clone, branch from origin's default), links a session id to it, then changes it
as an agent's shell would: `--changes` files modified (default 300), a third as many new (untracked, in new folders),
deleted and moved with `mv`, a few made executable, a 1 MB binary, and `--own-commits` commits (default 5) of 40
edited files each. Timed, median of `--reps` (default 5): the first page, the last page and one file through the API
(Flask's test client, in this process: the worktree lookup, git, JSON), and the raw floor: `git diff HEAD` (every
tracked file's patch, the untracked ones left out) plus `git log -p` of the chat's commits, and `git status`.
No Redis, worker or opencode is needed: the chat's worktree is found on disk. Run from the repo root:
`.venv/bin/python bench/bench_changes.py`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stack import ROOT, bench_folder, git, make_origin, median_ms

sys.path.insert(0, str(ROOT))
from domain.changes import PAGE_FILES
from domain.config import load_settings
from domain.gitcmd import Git
from domain.inventory import session_link
from domain.layout import Layout
from domain.names import parse_repo
from domain.repo_ops import add_worktree, clone
from sidecar import create_app

SESSION = "ses_benchchanges"


def timed(fn: Callable[[], object], reps: int) -> float:
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return median_ms(seconds)


def change_like_an_agent(tree: Path, changes: int, own_commits: int) -> None:
    rng = random.Random(7)
    tracked = sorted(p for p in git("ls-files", cwd=tree).splitlines())
    rng.shuffle(tracked)
    for i in range(own_commits):
        for path in tracked[i * 40 : (i + 1) * 40]:
            with open(tree / path, "a") as f:
                f.write(f"edited in commit {i}\n")
        git("-c", "user.name=agent", "-c", "user.email=agent@localhost", "commit", "-qam", f"own {i}", cwd=tree)
    rest = tracked[own_commits * 40 :]
    modified, gone, moved = rest[:changes], rest[changes : changes + changes // 3], rest[-(changes // 3) :]
    for path in modified:
        text = (tree / path).read_text().splitlines(keepends=True)
        text[len(text) // 2 : len(text) // 2] = ["a line the agent wrote\n", "and another\n"]
        (tree / path).write_text("".join(text))
    for path in gone:
        (tree / path).unlink()
    for path in moved:
        (tree / path).rename(tree / f"{path}.moved")
    for i in range(changes // 3):
        new = tree / "generated" / f"part{i % 7}" / f"new{i:04}.py"
        new.parent.mkdir(parents=True, exist_ok=True)
        new.write_text("".join(f"value_{n} = {n}\n" for n in range(rng.randint(5, 80))))
    for path in modified[:20]:
        (tree / path).chmod(0o755)
    (tree / "assets.bin").write_bytes(os.urandom(1_000_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000, help="files in the origin repo (default 3000)")
    parser.add_argument("--changes", type=int, default=300, help="files modified; a third as many added, ...")
    parser.add_argument("--own-commits", type=int, default=5, help="the chat's own commits (40 files each)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    with bench_folder() as tmp:
        make_origin(tmp / "origin", "bench/app", args.files, 5)
        os.environ.update(MECODES_DATA_DIR=str(tmp / "data"), MECODES_GIT_BASE_URL=f"file://{tmp / 'origin'}/")
        settings = load_settings()
        layout, gitx, repo = Layout(settings.data_dir), Git(settings), parse_repo("bench/app")
        layout.ensure()
        clone(layout, gitx, repo, lambda *_: None)
        worktree = add_worktree(layout, gitx, repo, "benchchat", None)
        session_link(layout, repo, worktree.path).write_text(SESSION)
        change_like_an_agent(worktree.path, args.changes, args.own_commits)

        client = create_app(settings).test_client()

        def page(n: int) -> dict:
            response = client.get(f"/admin/chats/{SESSION}/changes?page={n}")
            assert response.status_code == 200, response.get_json()
            return response.get_json()

        first = page(1)
        last_page = first["pages"]
        some = first["groups"][0]["files"][0]["path"]

        def one_file() -> None:
            assert client.get(f"/admin/chats/{SESSION}/changes/file", query_string={"path": some}).status_code == 200

        def raw_patches() -> None:
            git("--no-optional-locks", "diff", "HEAD", cwd=worktree.path)
            git("log", "-p", "HEAD", "--not", "refs/remotes/origin/main", cwd=worktree.path)

        def raw_status() -> None:
            git("--no-optional-locks", "status", "--porcelain", cwd=worktree.path)

        rows = [
            ("GET .../changes, page 1", timed(lambda: page(1), args.reps)),
            (f"GET .../changes, page {last_page}", timed(lambda: page(last_page), args.reps)),
            ("GET .../changes/file", timed(one_file, args.reps)),
        ]
        raw = timed(raw_patches, args.reps)
        status = timed(raw_status, args.reps)
        size = len(client.get(f"/admin/chats/{SESSION}/changes?page=1").data)
        print(
            f"{args.files} files; {first['files_total']} changed ({first['groups'][0]['files_total']} uncommitted),"
            f" {first['commits_total']} own commits; {last_page} pages of {PAGE_FILES}; page 1 is {size / 1000:.0f} KB"
        )
        print(f"{'operation':<28}{'ms':>9}{'raw ms':>9}{'ratio':>8}")
        for name, ms in rows:
            print(f"{name:<28}{ms:>9.1f}{raw:>9.1f}{ms / raw:>8.2f}")
        print(f"{'raw: git diff HEAD + log -p':<28}{raw:>9.1f}")
        print(f"{'raw: git status --porcelain':<28}{status:>9.1f}")


if __name__ == "__main__":
    main()
