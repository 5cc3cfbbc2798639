"""The Changes tab on the phone shows what git sees in the chat's worktree, whoever changed it: here the agent's shell
command (the stand-in model's `RUN`, a real `bash` tool call in the real opencode) writes, edits, deletes, commits.
Chromium at a phone's size, through Caddy (see tests/test_web.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from playwright.sync_api import expect

from tests.conftest import Origin
from tests.test_stack import RunningStack, new_chat
from tests.test_web import Phone, llm, phone, stack  # noqa: F401 - fixtures, by name

# What the agent's shell does: a new file, an edit, a deletion, a binary file, 6 files of 200 KB (the page's patches
# stop at 1 MB: the sixth's is read when it is opened), 30 generated files (a second page), a commit of one more file.
COMMAND = (
    "for i in 1 2 3 4 5 6; do seq 1 30000 > a$i.txt; done"
    " && echo hello > new.txt && echo 'edited by the agent' >> file0.txt && rm file1.txt && printf 'a\\000b' > data.bin"
    " && mkdir gen && for i in $(seq 10 39); do echo $i > gen/f$i.txt; done"
    " && echo kept > committed.txt && git add committed.txt && git commit -q -m 'Add committed.txt'"
)


def test_what_a_shell_command_changed_shows_in_the_changes_tab(
    phone: Phone,  # noqa: F811
    stack: RunningStack,  # noqa: F811
    origin: Origin,
) -> None:
    repo = f"changes{uuid.uuid4().hex[:6]}/app"
    origin.create(repo)
    chat = new_chat(stack, repo)
    page = phone.page
    phone.go(f"#/chat/{chat['session_id']}")
    page.get_by_role("button", name="Changes").click()
    changes = page.get_by_role("region", name="Changes", exact=True)
    expect(changes).to_contain_text("No changes: the worktree matches origin/main.")
    phone.shot("chat-changes-none")

    # The agent runs the command while the tab is open: when its turn ends, the tab reads git again.
    page.fill("#prompt", f"RUN {COMMAND}")
    page.get_by_role("button", name="Send").click()
    expect(changes).to_contain_text("41 files changed against origin/main, 1 commit of this chat.", timeout=60_000)
    expect(page.get_by_role("button", name="Changes (41)")).to_be_visible()
    uncommitted = changes.get_by_role("region", name="Uncommitted changes")
    expect(uncommitted.locator(".item-meta")).to_have_text("40 files")

    def row(path: str):
        return changes.locator("details.file-diff", has=page.locator(".path", has_text=path))

    expect(row("file0.txt").locator(".badge")).to_have_text("M")
    expect(row("file1.txt").locator(".badge")).to_have_text("D")
    expect(row("data.bin").locator(".badge")).to_have_text("A")
    row("data.bin").locator("summary").click()
    expect(row("data.bin")).to_contain_text("Binary file")
    row("file0.txt").locator("summary").click()
    expect(row("file0.txt").locator(".diff .add")).to_have_text("+edited by the agent\n")
    row("file1.txt").locator("summary").click()
    expect(row("file1.txt").locator(".diff .del")).to_have_text("-content 1\n")
    row("a6.txt").locator("summary").click()
    expect(row("a6.txt").locator(".diff .add").first).to_have_text("+1\n")
    expect(row("a6.txt")).to_contain_text("+30000")
    phone.shot("chat-changes")
    phone.fits_narrow_screen("chat-changes")

    # 25 files a page: the rest (new.txt among them, after gen/) come with More.
    expect(row("new.txt")).to_have_count(0)
    page.get_by_role("button", name="More (page 2 of 2)").click()
    expect(row("new.txt").locator(".badge")).to_have_text("A")
    expect(uncommitted.locator("details.file-diff")).to_have_count(40)
    commit = changes.get_by_role("region", name="Commit Add committed.txt")
    expect(commit).to_contain_text("1 file")
    commit.locator("summary").click()
    expect(commit.locator(".diff .add")).to_have_text("+kept\n")
    expect(page.get_by_role("button", name="More (page 2 of 2)")).to_have_count(0)
    phone.shot("chat-changes-more")

    # Opened again later, the tab reads git afresh: a change made outside the agent shows too.
    (Path(chat["path"]) / "file2.txt").unlink()
    page.get_by_role("button", name="Conversation").click()
    page.get_by_role("button", name="Changes (41)").click()
    expect(row("file2.txt").locator(".badge")).to_have_text("D")
    expect(page.get_by_role("button", name="Changes (42)")).to_be_visible()
