"""A chat's changes as git sees them (GET /admin/chats/{id}/changes and .../changes/file), with real git, a worker
that makes the chat and the real opencode holding its session. The changes are made as the agent's shell makes
them: files written, moved and removed by hand, a commit with git."""

from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from domain.changes import ANSWER_CAP, PAGE_FILES, PATCH_CAP
from tests.conftest import Origin, Stack, StackFactory, git


@pytest.fixture
def stack(origin: Origin, stack_factory: StackFactory, opencode_url: str) -> Stack:
    return stack_factory(origin.base_url, OPENCODE_URL=opencode_url)


@pytest.fixture
def chat(stack: Stack, origin: Origin) -> dict[str, Any]:
    repo = f"chg{uuid.uuid4().hex[:6]}/app"
    origin.create(repo, files=4)
    accepted = stack.client.post("/admin/chats", json={"repo": repo, "title": "changes"})
    assert accepted.status_code == 202, accepted.get_json()
    done = stack.api.wait(accepted.get_json(), timeout=60)
    assert done["status"] == "finished", done
    return done["result"]


def get(stack: Stack, chat: dict[str, Any], what: str = "changes", **query: Any) -> tuple[int, dict[str, Any]]:
    response = stack.client.get(f"/admin/chats/{chat['session_id']}/{what}", query_string=query)
    return response.status_code, response.get_json()


def files_by_path(group: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in group["files"]}


def test_uncommitted_changes_and_the_chats_commits_as_git_sees_them(stack: Stack, chat: dict[str, Any]) -> None:
    tree = Path(chat["path"])
    (tree / "feature.py").write_text("def feature():\n    return 42\n")
    git("add", "feature.py", cwd=tree)
    git("commit", "-q", "-m", "Add the feature", cwd=tree)
    (tree / "notes.md").write_text("# Notes\n")  # new, untracked
    (tree / "file0.txt").write_text("content 0\nedited by a shell\n")  # modified
    (tree / "file1.txt").unlink()  # deleted
    (tree / "file2.txt").rename(tree / "moved.txt")  # renamed by `mv`: a deletion and an untracked file to git
    (tree / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(64))  # binary
    (tree / "docs" / "deep").mkdir(parents=True)  # an untracked folder: each of its files is listed
    (tree / "docs" / "deep" / "a.md").write_text("deep\n")
    (tree / "docs" / "b.md").write_text("b\n")
    (tree / "file3.txt").chmod(0o755)  # a mode change only
    status_before = git("--no-optional-locks", "status", "--porcelain", cwd=tree)
    index = Path(git("rev-parse", "--git-path", "index", cwd=tree).strip())
    index = index if index.is_absolute() else tree / index
    index_before = (index.read_bytes(), index.stat().st_mtime_ns)

    status, body = get(stack, chat)
    assert status == 200, body
    assert body["session_id"] == chat["session_id"] and body["branch"] == chat["branch"]
    assert body["base"] == "origin/main" and body["head"] == git("rev-parse", "HEAD", cwd=tree).strip()
    assert (body["page"], body["pages"], body["next_page"], body["files_total"]) == (1, 1, None, 9)
    uncommitted, commit = body["groups"]
    assert uncommitted["kind"] == "uncommitted" and uncommitted["commit"] is None and uncommitted["files_total"] == 8
    files = files_by_path(uncommitted)
    assert {p: f["letter"] for p, f in files.items()} == {
        "notes.md": "A",
        "file0.txt": "M",
        "file1.txt": "D",
        "moved.txt": "R",
        "logo.png": "A",
        "docs/deep/a.md": "A",
        "docs/b.md": "A",
        "file3.txt": "M",
    }
    assert files["notes.md"] | {"patch": None} == files["notes.md"] | {
        "status": "added",
        "insertions": 1,
        "deletions": 0,
        "binary": False,
        "patch": None,
    }
    assert files["notes.md"]["patch"] == "@@ -0,0 +1 @@\n+# Notes\n"
    assert "+edited by a shell\n" in files["file0.txt"]["patch"] and files["file0.txt"]["insertions"] == 1
    assert files["file1.txt"]["status"] == "deleted" and files["file1.txt"]["patch"] == "@@ -1 +0,0 @@\n-content 1\n"
    assert files["moved.txt"]["old_path"] == "file2.txt" and files["moved.txt"]["status"] == "renamed"
    assert files["logo.png"]["binary"] is True and files["logo.png"]["patch"] is None
    assert (files["file3.txt"]["old_mode"], files["file3.txt"]["new_mode"]) == ("100644", "100755")
    assert files["file3.txt"]["patch"] is None and files["file0.txt"]["old_mode"] is None

    assert commit["kind"] == "commit" and commit["files_total"] == 1
    assert commit["commit"]["subject"] == "Add the feature" and commit["commit"]["author"] == "t"
    assert commit["commit"]["hash"] == git("rev-parse", "HEAD", cwd=tree).strip() and commit["commit"]["time"]
    (feature,) = commit["files"]
    assert feature["path"] == "feature.py" and feature["status"] == "added" and feature["insertions"] == 2
    assert feature["patch"] == "@@ -0,0 +1,2 @@\n+def feature():\n+    return 42\n"

    # Looking wrote nothing: the worktree's status and its index are as they were.
    assert git("--no-optional-locks", "status", "--porcelain", cwd=tree) == status_before
    assert (index.read_bytes(), index.stat().st_mtime_ns) == index_before

    # One file at a time: uncommitted, or of a commit.
    status, one = get(stack, chat, "changes/file", path="moved.txt")
    assert status == 200, one
    assert one["kind"] == "uncommitted" and one["file"]["old_path"] == "file2.txt"
    status, one = get(stack, chat, "changes/file", path="feature.py", commit=commit["commit"]["hash"])
    assert status == 200 and one["commit"]["subject"] == "Add the feature" and one["file"]["patch"] == feature["patch"]
    status, refused = get(stack, chat, "changes/file", path="file0.txt", commit=commit["commit"]["hash"])
    assert status == 404 and refused["message"] == f"commit {commit['commit']['hash']} did not change file0.txt"
    base = git("rev-parse", "origin/main", cwd=tree).strip()
    status, refused = get(stack, chat, "changes/file", path="file0.txt", commit=base)
    assert status == 404 and refused["message"] == f"commit {base} is not one of this chat's commits"
    status, refused = get(stack, chat, "changes/file", path="nothing.txt")
    assert status == 404 and refused["message"] == "nothing.txt has no uncommitted change"

    # Committed and clean: only the commits are left, an empty one among them.
    git("add", "-A", cwd=tree)
    git("commit", "-q", "-m", "Everything else", cwd=tree)
    git("commit", "-q", "--allow-empty", "-m", "Nothing at all", cwd=tree)
    status, body = get(stack, chat)
    assert [(g["kind"], g["commit"]["subject"], g["files_total"]) for g in body["groups"]] == [
        ("commit", "Nothing at all", 0),
        ("commit", "Everything else", 8),
        ("commit", "Add the feature", 1),
    ]
    assert body["commits_total"] == 3 and body["commits_more"] is False and body["files_total"] == 9


def test_large_changes_come_a_page_at_a_time_with_capped_patches(stack: Stack, chat: dict[str, Any]) -> None:
    tree = Path(chat["path"])
    lines = lambda n, tag: "".join(f"{tag} line {i} of a generated file\n" for i in range(n))  # noqa: E731
    (tree / "a-huge.txt").write_text(lines(2 * PATCH_CAP // 30, "huge"))  # its patch is cut at the cap
    for i in range(1, 7):  # 200 KB each: the page's patches reach the answer's cap at the fourth
        (tree / f"b{i:02}.txt").write_text(lines(200_000 // 30, f"b{i}"))
    (tree / "c-big.log").write_text(lines(9_000_000 // 30, "big"))  # over 8 MB: no line diff
    (tree / "d").mkdir()
    for i in range(60):
        (tree / "d" / f"f{i:03}.txt").write_text(f"small {i}\n")
    (tree / "e-vast.txt").write_text(lines(5_000_000 // 30, "vast"))  # git's output for its page is cut short

    started = time.monotonic()
    status, first = get(stack, chat)
    took = time.monotonic() - started
    assert status == 200, first
    print(f"first page of {first['files_total']} files: {took * 1000:.0f} ms")
    assert first["files_total"] == 69 and first["pages"] == math.ceil(69 / PAGE_FILES) and first["next_page"] == 2
    files = files_by_path(first["groups"][0])
    assert len(files) == PAGE_FILES
    huge = files["a-huge.txt"]
    assert huge["truncated"] is True and PATCH_CAP - 200 < len(huge["patch"].encode()) <= PATCH_CAP
    assert huge["patch"].endswith("\n") and huge["insertions"] == 2 * PATCH_CAP // 30
    shown = [f"b{i:02}.txt" for i in range(1, 4)]
    assert all(files[p]["patch"] and not files[p]["omitted"] for p in shown)
    assert sum(len(f["patch"] or "") for f in files.values()) <= ANSWER_CAP
    for name in ("b04.txt", "b05.txt", "b06.txt"):  # 200 KB more would pass the page's 1 MB
        assert files[name]["omitted"] is True and files[name]["patch"] is None, name
        assert files[name]["insertions"] == 200_000 // 30  # counted all the same
    assert files["d/f000.txt"]["patch"] == "@@ -0,0 +1 @@\n+small 0\n"  # a small one after them fits
    assert files["c-big.log"]["binary"] is True and files["c-big.log"]["patch"] is None

    # The rest, page after page: every file once, in git's order.
    seen = list(files)
    page = first
    while page["next_page"]:
        status, page = get(stack, chat, page=page["next_page"])
        assert status == 200 and [g["kind"] for g in page["groups"]] == ["uncommitted"]
        seen += [f["path"] for f in page["groups"][0]["files"]]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 69 and page["page"] == 3
    vast = page["groups"][0]["files"][-1]
    assert vast["path"] == "e-vast.txt" and vast["truncated"] and len(vast["patch"]) <= PATCH_CAP
    status, past = get(stack, chat, page=9)
    assert status == 200 and past["groups"] == [] and past["next_page"] is None

    # An omitted file comes on its own.
    status, one = get(stack, chat, "changes/file", path="b05.txt")
    assert status == 200 and one["file"]["omitted"] is False and one["file"]["insertions"] == 200_000 // 30
    assert one["file"]["patch"].startswith("@@ -0,0 +1,") and "+b5 line 6665 of" in one["file"]["patch"]


def test_refused_asks_say_why(stack: Stack, chat: dict[str, Any]) -> None:
    for query, field in [({"page": 0}, "page"), ({"page": "two"}, "page"), ({"page": 100_001}, "page")]:
        status, refused = get(stack, chat, **query)
        assert status == 422 and field in refused["errors"]["query"], (query, refused)
    for query, field in [({}, "path"), ({"path": "a", "commit": "HEAD~1"}, "commit"), ({"path": ""}, "path")]:
        status, refused = get(stack, chat, "changes/file", **query)
        assert status == 422 and field in refused["errors"]["query"], (query, refused)

    response = stack.client.get("/admin/chats/..%2Fetc/changes")
    assert response.status_code in (404, 422)
    status, refused = get(stack, {"session_id": "ses_nosuchchat"})
    assert status == 404 and refused["message"] == "no chat with session ses_nosuchchat"

    owner, name = chat["repo"].split("/")
    removed = stack.client.delete(f"/admin/worktrees/{owner}/{name}/{chat['worktree']}")
    assert stack.api.wait(removed.get_json())["status"] == "finished"
    for what, query in [("changes", {}), ("changes/file", {"path": "file0.txt"})]:
        status, refused = get(stack, chat, what, **query)
        assert status == 409, refused
        assert refused["message"] == (
            f"this chat's worktree was removed (its branch {chat['branch']} is kept), so there are no changes to"
            " show: make it again first"
        )
