"""GitHub: listing the user's repos through a local stand-in of the REST API, and pushing a chat's branch to a
real git server that demands the token (so the credential helper is exercised on clone, fetch and push)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.gitcmd import CREDENTIAL_HELPER
from tests.conftest import SECRET_TOKEN, Origin, Stack, StackFactory, git
from tests.support.fake_github import FakeGitHub
from tests.support.githttp import GitHttpServer

REPOS = [
    {
        "full_name": f"octo/repo{i:03d}",
        "private": i % 2 == 0,
        "default_branch": "main",
        "pushed_at": f"2026-{i % 12 + 1:02d}-01T00:00:00Z",
    }
    for i in range(250)
]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(SECRET_TOKEN, REPOS) as fake:
        yield fake


def listing(stack: Stack, query: str = "") -> tuple[int, Any]:
    response = stack.client.get(f"/admin/github/repos{query}")
    return response.status_code, response.get_json()


def test_repos_are_paginated_sorted_cached_and_filtered(
    origin: Origin, stack_factory: StackFactory, github: FakeGitHub
) -> None:
    stack = stack_factory(origin.base_url, GITHUB_API_URL=github.url)
    status, first = listing(stack)
    assert status == 200 and first["total"] == 250 and first["pages"] == 9 and len(first["repos"]) == 30
    assert github.requests.count("GET /user/repos") == 3  # GitHub's pages of 100, followed by their Link headers
    pushed = [r["pushed_at"] for r in first["repos"]]
    assert pushed == sorted(pushed, reverse=True)
    assert set(first["repos"][0]) == {"full_name", "private", "default_branch", "pushed_at", "cached"}

    status, last = listing(stack, "?page=9")
    assert len(last["repos"]) == 250 - 8 * 30
    assert github.requests.count("GET /user/repos") == 3, "served from the cache"
    _, found = listing(stack, "?q=REPO00")
    assert {r["full_name"] for r in found["repos"]} == {f"octo/repo00{i}" for i in range(10)}
    listing(stack, "?refresh=true")
    assert github.requests.count("GET /user/repos") == 6


def test_cached_flag(origin: Origin, stack_factory: StackFactory, github: FakeGitHub) -> None:
    origin.create("octo/repo007")
    stack = stack_factory(origin.base_url, GITHUB_API_URL=github.url)
    stack.api.clone("octo/repo007")
    _, found = listing(stack, "?q=repo007")
    assert found["repos"] == [{**next(r for r in REPOS if r["full_name"] == "octo/repo007"), "cached": True}]


def test_github_refusals(origin: Origin, stack_factory: StackFactory, github: FakeGitHub) -> None:
    no_token = stack_factory(origin.base_url, GITHUB_API_URL=github.url, GITHUB_TOKEN="")
    status, body = listing(no_token)
    assert status == 503 and "GITHUB_TOKEN" in body["message"]

    wrong = stack_factory(origin.base_url, GITHUB_API_URL=github.url, GITHUB_TOKEN="ghp_wrong")
    status, body = listing(wrong)
    assert status == 401 and "refused the token" in body["message"] and "ghp_wrong" not in str(body)

    github.rate_limited = True
    limited = stack_factory(origin.base_url, GITHUB_API_URL=github.url)
    status, body = listing(limited, "?refresh=true")
    assert status == 503 and "rate limit" in body["message"] and body["reset_at"]
    asked = len(github.requests)
    status, again = listing(limited, "?refresh=true")
    assert status == 503 and again["reset_at"] == body["reset_at"]
    assert len(github.requests) == asked, "no asking again before the limit resets"

    status, _ = listing(limited, "?page=0")
    assert status == 422


def test_push_opens_a_pull_request(
    origin: Origin, stack_factory: StackFactory, github: FakeGitHub, git_server: GitHttpServer, opencode_url: str
) -> None:
    name = f"octo{uuid.uuid4().hex[:4]}/service"
    bare = origin.create(name)
    stack = stack_factory(git_server.base_url, GITHUB_API_URL=github.url, OPENCODE_URL=opencode_url)
    chat = stack.api.wait(stack.client.post("/admin/chats", json={"repo": name, "title": "Fix it"}).get_json())
    assert chat["status"] == "finished", chat
    session_id, path = chat["result"]["session_id"], Path(chat["result"]["path"])

    nothing = stack.client.post(f"/admin/chats/{session_id}/push", json={})
    assert nothing.status_code == 409 and "nothing to push" in nothing.get_json()["message"]
    (path / "fix.txt").write_text("fixed")
    assert "not committed" in stack.client.post(f"/admin/chats/{session_id}/push", json={}).get_json()["message"]

    git("add", "fix.txt", cwd=path)
    git("commit", "-q", "-m", "Fix the thing", cwd=path)
    accepted = stack.client.post(f"/admin/chats/{session_id}/push", json={"body": "Details", "draft": True})
    assert accepted.status_code == 202
    pushed = stack.api.wait(accepted.get_json())
    assert pushed["status"] == "finished", pushed
    result = pushed["result"]
    head = git("rev-parse", "HEAD", cwd=path).strip()
    assert result["commit"] == head and result["branch"] == chat["result"]["branch"] and result["pr_created"]
    assert git("rev-parse", f"refs/heads/{result['branch']}", cwd=bare).strip() == head  # on the git server
    assert github.pulls == [
        {
            "title": "Fix the thing",
            "head": result["branch"],
            "base": "main",
            "body": "Details",
            "draft": True,
            "repo": name,
            "number": 1,
            "html_url": result["pr_url"],
        }
    ]
    again = stack.api.wait(stack.client.post(f"/admin/chats/{session_id}/push", json={}).get_json())
    assert again["result"]["pr_created"] is False and again["result"]["pr_url"] == result["pr_url"]

    assert stack.client.post("/admin/chats/ses_nope/push", json={}).status_code == 404
    assert stack.client.post(f"/admin/chats/{session_id}/push", json={"draft": "maybe"}).status_code == 422


def test_the_agents_own_push_uses_the_helper(origin: Origin, git_server: GitHttpServer, tmp_path: Path) -> None:
    """What bin/start sets up for the agent: git config naming the helper, the token only in the environment."""
    name = f"octo{uuid.uuid4().hex[:4]}/agent"
    bare = origin.create(name)
    config = tmp_path / "gitconfig"
    git("config", "--file", str(config), f"credential.{git_server.base_url.rstrip('/')}.helper", CREDENTIAL_HELPER)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_TERMINAL_PROMPT": "0", "GITHUB_TOKEN": SECRET_TOKEN}
    work = tmp_path / "work"
    run = lambda *args: subprocess.run(["git", *args], env=env, check=True, capture_output=True, text=True)  # noqa: E731
    run("clone", "-q", f"{git_server.base_url}{name}.git", str(work))
    (work / "agent.txt").write_text("by the agent")
    run("-C", str(work), "add", "agent.txt")
    run("-C", str(work), "-c", "user.name=a", "-c", "user.email=a@e", "commit", "-q", "-m", "agent work")
    run("-C", str(work), "push", "-q", "origin", "HEAD:refs/heads/agent-branch")
    assert git("rev-parse", "refs/heads/agent-branch", cwd=bare).strip() == git("rev-parse", "HEAD", cwd=work).strip()
    assert SECRET_TOKEN not in config.read_text() + (work / ".git" / "config").read_text()
    without = {**env, "GITHUB_TOKEN": ""}
    refused = subprocess.run(
        ["git", "-C", str(work), "push", "origin", "HEAD:refs/heads/x"], env=without, capture_output=True, text=True
    )
    assert refused.returncode != 0
