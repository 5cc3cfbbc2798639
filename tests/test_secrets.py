"""The GitHub token reaches git only through the credential helper, and nowhere else."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from domain.gitcmd import Git
from domain.redaction import redact
from tests.conftest import GITHUB_USER, SECRET_TOKEN, Origin, StackFactory
from tests.support.githttp import GitHttpServer


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def test_token_is_used_for_auth_and_found_nowhere(origin: Origin, stack_factory: StackFactory) -> None:
    name = f"priv{uuid.uuid4().hex[:6]}/secret-repo"
    origin.create(name)
    with GitHttpServer(origin.root, auth=(GITHUB_USER, SECRET_TOKEN)) as server:
        stack = stack_factory(server.base_url)
        cloned = stack.api.clone(name)
        assert cloned["status"] == "finished", cloned
        assert stack.api.clone(name)["result"]["action"] == "fetched"
        worktree = stack.api.worktree(name, "s1")
        assert worktree["status"] == "finished", worktree
        assert any(server.seen_auth), "git authenticated through the credential helper"

        responses = [
            stack.client.get(url).get_data()
            for url in ("/admin/repos", "/admin/worktrees", "/admin/jobs?limit=500", "/admin/disk", cloned["url"])
        ]
    for body in responses:
        assert SECRET_TOKEN.encode() not in body
    assert _files_containing(stack.settings.data_dir, SECRET_TOKEN.encode()) == []
    assert SECRET_TOKEN not in stack.log.read_text()
    config = (stack.settings.data_dir / "repos" / name.replace("/", "__") / "config").read_text()
    assert server.base_url in config and "@" not in config  # no credentials in the remote URL


def test_refused_token_gives_a_clear_error_without_the_token(origin: Origin, stack_factory: StackFactory) -> None:
    name = f"priv{uuid.uuid4().hex[:6]}/locked"
    origin.create(name)
    with GitHttpServer(origin.root, auth=(GITHUB_USER, "a-different-token")) as server:
        stack = stack_factory(server.base_url)
        failed = stack.api.clone(name)
    assert failed["status"] == "failed"
    assert "git clone" in failed["error"] and "Authentication failed" in failed["error"]
    assert SECRET_TOKEN not in json.dumps(failed)


def test_redaction(settings) -> None:
    text = f"fatal: https://user:{SECRET_TOKEN}@github.com/x.git and {SECRET_TOKEN}"
    cleaned = redact(text, Git(settings).settings.secrets)
    assert SECRET_TOKEN not in cleaned and "user:" not in cleaned
    assert "https://***@github.com/x.git" in cleaned
