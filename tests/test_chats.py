"""Chats against the real `opencode serve`: create (with and without a prompt), list, delete, roll back, 503s.

No LLM is reachable here, so a prompt is accepted and recorded but never answered (the session then keeps
retrying, which opencode reports as a non-idle status: a busy agent, for GC and deletion). Answered turns, with a
stand-in model, are in test_agent.py."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from domain.locks import repo_lock
from domain.names import parse_repo
from tests.conftest import Origin, Stack, StackFactory, free_port, git, start_opencode, wait_until


def oc(url: str, method: str, path: str, directory: str | None = None, body: Any = None) -> Any:
    """opencode's API, directly."""
    query = f"?{urllib.parse.urlencode({'directory': directory})}" if directory else ""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}{path}{query}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


@pytest.fixture
def stack(origin: Origin, stack_factory: StackFactory, opencode_url: str) -> Stack:
    return stack_factory(origin.base_url, OPENCODE_URL=opencode_url)


@pytest.fixture
def repo(origin: Origin) -> str:
    name = f"chat{uuid.uuid4().hex[:6]}/app"
    origin.create(name)
    return name


def new_chat(stack: Stack, **body: Any) -> dict[str, Any]:
    accepted = stack.client.post("/admin/chats", json=body)
    assert accepted.status_code == 202, accepted.get_json()
    return stack.api.wait(accepted.get_json(), timeout=60)


def test_chat_with_a_prompt(stack: Stack, repo: str, opencode_url: str) -> None:
    done = new_chat(stack, repo=repo, prompt="Add a README that explains the project\nwith examples")
    assert done["status"] == "finished", done
    chat = done["result"]
    assert chat["repo"] == repo and chat["prompt_sent"] is True and chat["repo_action"] == "cloned"
    assert chat["branch"] == f"mecodes/{chat['worktree']}" and chat["url"] == f"/#/chat/{chat['session_id']}"
    assert chat["title"] == "Add a README that explains the project"
    assert done["progress"]["step"] == "prompt: send the task"
    path = Path(chat["path"])
    assert (path / "file0.txt").exists() and git("branch", "--show-current", cwd=path).strip() == chat["branch"]

    session = oc(opencode_url, "GET", f"/session/{chat['session_id']}")
    assert session["directory"] == str(path) and session["metadata"]["mecodes"]["repo"] == repo

    def user_texts() -> list[str]:
        messages = oc(opencode_url, "GET", f"/session/{chat['session_id']}/message", str(path))
        return [p["text"] for m in messages if m["info"]["role"] == "user" for p in m["parts"] if p["type"] == "text"]

    texts = wait_until(user_texts, 30, "the prompt to be recorded (prompt_async records it just after answering)")
    assert texts == ["Add a README that explains the project\nwith examples"]

    # The worktree knows its session (the link is on disk) and shows its title and status.
    listed = {w["opencode_session_id"]: w for w in stack.client.get("/admin/worktrees").get_json()["worktrees"]}
    mine = listed[chat["session_id"]]
    assert mine["title"] == chat["title"] and mine["status"] in {"idle", "busy", "retry"}
    assert mine["path"] == chat["path"]
    # ... and can be addressed by the session id.
    (path / "wip.txt").write_text("agent output")
    owner, name = repo.split("/")
    refused = stack.client.delete(f"/admin/worktrees/{owner}/{name}/{chat['session_id']}")
    assert refused.status_code == 409 and "uncommitted" in refused.get_json()["message"]


def test_list_joins_sessions_and_worktrees(stack: Stack, repo: str, opencode_url: str, tmp_path: Path) -> None:
    chat = new_chat(stack, repo=repo, title="plain chat")["result"]
    assert chat["prompt_sent"] is False
    assert oc(opencode_url, "GET", f"/session/{chat['session_id']}/message", chat["path"]) == []
    lone_dir = tmp_path / "elsewhere"
    lone_dir.mkdir()
    lone = oc(opencode_url, "POST", "/session", str(lone_dir), {"title": "no worktree"})
    bare_worktree = stack.api.worktree(repo, "handmade")["result"]

    chats = stack.client.get("/admin/chats").get_json()["chats"]
    by_session = {c["session_id"]: c for c in chats if c["session_id"]}
    joined = by_session[chat["session_id"]]
    assert joined["has_session"] and joined["has_worktree"] and joined["title"] == "plain chat"
    assert joined["repo"] == repo and joined["branch"] == chat["branch"] and joined["status"] == "idle"
    assert joined["dirty"] is False and joined["unpushed_commits"] == 0 and joined["disk_bytes"] > 0
    assert joined["last_activity"]
    assert by_session[lone["id"]]["has_worktree"] is False and by_session[lone["id"]]["title"] == "no worktree"
    orphan = next(c for c in chats if c["worktree"] == "handmade")
    assert orphan["has_session"] is False and orphan["path"] == bare_worktree["path"] and orphan["status"] is None
    activity = [c["last_activity"] for c in chats if c["last_activity"]]
    assert activity == sorted(activity, reverse=True)


def test_delete_chat(stack: Stack, repo: str, opencode_url: str) -> None:
    clean = new_chat(stack, repo=repo)["result"]
    accepted = stack.client.delete(f"/admin/chats/{clean['session_id']}")
    assert accepted.status_code == 202
    done = stack.api.wait(accepted.get_json())
    assert done["status"] == "finished" and done["result"]["session_deleted"] is True
    assert not Path(clean["path"]).exists()
    with pytest.raises(urllib.error.HTTPError):
        oc(opencode_url, "GET", f"/session/{clean['session_id']}")
    assert stack.client.delete(f"/admin/chats/{clean['session_id']}").status_code == 404

    busy = new_chat(stack, repo=repo, prompt="Refactor everything")["result"]
    Path(busy["path"], "half-done.py").write_text("print('wip')")
    assert stack.client.delete(f"/admin/chats/{busy['session_id']}").status_code == 409
    assert Path(busy["path"], "half-done.py").exists()
    wait_until(
        lambda: oc(opencode_url, "GET", "/session/status", busy["path"]).get(busy["session_id"]), 30, "a busy agent"
    )
    forced = stack.api.wait(stack.client.delete(f"/admin/chats/{busy['session_id']}?force=true").get_json())
    assert forced["status"] == "finished", forced
    assert forced["result"]["aborted"] is True and forced["result"]["session_deleted"] is True
    assert not Path(busy["path"]).exists()


def busy_agent(stack: Stack, repo: str, opencode_url: str) -> dict[str, Any]:
    """A chat whose agent works (no model answers, so it keeps retrying)."""
    chat = new_chat(stack, repo=repo, prompt="Keep working")["result"]
    wait_until(
        lambda: oc(opencode_url, "GET", "/session/status", chat["path"]).get(chat["session_id"]), 30, "a busy agent"
    )
    return chat


def aborted(opencode_url: str, chat: dict[str, Any]) -> bool:
    """The agent stopped, its reply ended as aborted."""
    if oc(opencode_url, "GET", "/session/status", chat["path"]).get(chat["session_id"]):
        return False
    messages = oc(opencode_url, "GET", f"/session/{chat['session_id']}/message", chat["path"])
    return (messages[-1]["info"].get("error") or {}).get("name") == "MessageAbortedError"


@pytest.mark.parametrize("what", ["worktree", "repo"])
def test_every_delete_of_a_worktree_stops_its_agent_first(
    stack: Stack, repo: str, opencode_url: str, what: str
) -> None:
    chat = busy_agent(stack, repo, opencode_url)
    url = f"/admin/worktrees/{repo}/{chat['worktree']}" if what == "worktree" else f"/admin/repos/{repo}?force=true"
    accepted = stack.client.delete(url)
    assert accepted.status_code == 202, accepted.get_json()
    done = stack.api.wait(accepted.get_json())
    assert done["status"] == "finished", done
    assert not Path(chat["path"]).exists() and aborted(opencode_url, chat)


def test_a_chat_without_its_worktree_takes_no_prompt_until_it_is_made_again(
    stack: Stack, repo: str, opencode_url: str
) -> None:
    chat = new_chat(stack, repo=repo, title="no folder")["result"]
    sid = chat["session_id"]
    sent = stack.client.post(f"/admin/chats/{sid}/prompt", json={"text": "hello"})
    assert sent.status_code == 200 and sent.get_json() == {"session_id": sid, "sent": True}
    assert stack.client.post(f"/admin/chats/{sid}/worktree").status_code == 409
    removed = stack.api.wait(stack.client.delete(f"/admin/worktrees/{repo}/{chat['worktree']}").get_json())
    assert removed["status"] == "finished", removed

    state = stack.client.get(f"/admin/chats/{sid}").get_json()
    assert state["has_session"] is True and state["has_worktree"] is False, state
    for action, body in (("prompt", {"text": "are you there?"}), ("continue", None)):
        refused = stack.client.post(f"/admin/chats/{sid}/{action}", json=body)
        assert refused.status_code == 409, refused.get_json()
        message = refused.get_json()["message"]
        assert message == (
            f"this chat's worktree was removed (its branch {chat['branch']} is kept), so the agent has nowhere to"
            " work: make the worktree again, or delete the chat"
        )

    made = stack.api.wait(stack.client.post(f"/admin/chats/{sid}/worktree").get_json())
    assert made["status"] == "finished" and made["result"]["branch"] == chat["branch"], made
    assert git("branch", "--show-current", cwd=Path(chat["path"])).strip() == chat["branch"]
    assert stack.client.get(f"/admin/chats/{sid}").get_json()["has_worktree"] is True
    sent = stack.client.post(f"/admin/chats/{sid}/prompt", json={"text": "back again"})
    assert sent.status_code == 200, sent.get_json()

    def texts() -> list[str]:
        messages = oc(opencode_url, "GET", f"/session/{sid}/message", chat["path"])
        return [p["text"] for m in messages if m["info"]["role"] == "user" for p in m["parts"] if p["type"] == "text"]

    wait_until(lambda: texts() == ["hello", "back again"], 30, "both prompts recorded")
    assert stack.client.get("/admin/chats/ses_unknown").status_code == 404


def test_gc_keeps_the_worktree_of_a_busy_session(stack: Stack, repo: str, opencode_url: str) -> None:
    chat = new_chat(stack, repo=repo, prompt="Keep working")["result"]
    wait_until(
        lambda: oc(opencode_url, "GET", "/session/status", chat["path"]).get(chat["session_id"]), 30, "a busy agent"
    )
    then = time.time() - 30 * 86400
    for target in Path(chat["path"]).rglob("*"):
        os.utime(target, (then, then))
    os.utime(chat["path"], (then, then))
    gc = stack.api.wait(stack.client.post("/admin/gc", json={"dry_run": True}).get_json())["result"]
    decision = next(d for d in gc["decisions"] if d["path"] == chat["path"])
    assert decision["action"] == "kept" and decision["reason"] == f"opencode session {chat['session_id']} is busy"


def test_bad_chat_requests(stack: Stack, repo: str) -> None:
    for body, field in (
        ({}, "repo"),
        ({"repo": "../x"}, "repo"),
        ({"repo": repo, "prompt": ""}, "prompt"),
        ({"repo": repo, "prompt": "x" * 50_001}, "prompt"),
        ({"repo": repo, "model": "no-slash"}, "model"),
        ({"repo": repo, "model": "a/b; rm -rf /"}, "model"),
        ({"repo": repo, "branch": "-x"}, "branch"),
        ({"repo": repo, "title": ""}, "title"),
        ({"repo": repo, "extra": 1}, "extra"),
    ):
        response = stack.client.post("/admin/chats", json=body)
        assert response.status_code in {413, 422}, (body, response.status_code)
        if response.status_code == 422:
            assert field in response.get_json()["errors"]["json"]
    assert stack.client.delete("/admin/chats/..%2f..").status_code in {404, 422}
    assert stack.client.delete("/admin/chats/-rf").status_code == 422


def test_a_branch_another_chat_holds_is_409_naming_that_chat(stack: Stack, repo: str) -> None:
    held = new_chat(stack, repo=repo, branch="topic", title="Holds the topic")
    assert held["status"] == "finished", held
    session_id = held["result"]["session_id"]
    for url, body in (
        ("/admin/chats", {"repo": repo, "branch": "topic", "prompt": "also on topic"}),
        ("/admin/worktrees", {"repo": repo, "session_id": "elsewhere", "branch": "topic"}),
    ):
        refused = stack.client.post(url, json=body)
        assert refused.status_code == 409, (url, refused.get_json())
        answer = refused.get_json()
        assert f'the worktree of chat {session_id} "Holds the topic"' in answer["message"], answer
        assert answer["errors"]["chat"] == {"session_id": session_id, "title": "Holds the topic"}
        assert str(stack.settings.data_dir) not in refused.get_data(as_text=True)
    chats = stack.client.get("/admin/chats").get_json()["chats"]
    assert [c["session_id"] for c in chats if c["repo"] == repo] == [session_id]  # nothing else was made


def test_opencode_down_answers_503_and_makes_nothing(origin: Origin, stack_factory: StackFactory, repo: str) -> None:
    stack = stack_factory(origin.base_url, OPENCODE_URL=f"http://127.0.0.1:{free_port()}")
    for response in (
        stack.client.post("/admin/chats", json={"repo": repo, "prompt": "hi"}),
        stack.client.get("/admin/chats"),
        stack.client.delete("/admin/chats/ses_abc"),
    ):
        assert response.status_code == 503 and "opencode" in response.get_json()["message"]
    health = stack.client.get("/admin/health")
    assert health.status_code == 503 and health.get_json()["problems"][0].startswith("opencode:")

    # No chat job. The periodic release job (run at the worker's start) skips, rather than fail every few minutes.
    def ended() -> list[dict[str, Any]]:
        jobs = stack.client.get("/admin/jobs").get_json()["jobs"]
        return jobs if all(j["status"] in ("finished", "failed") for j in jobs) and jobs else []

    jobs = wait_until(ended, 30, "the release job to run")
    assert [(j["kind"], j["status"]) for j in jobs] == [("release", "finished")], jobs
    assert "opencode is not answering" in jobs[0]["result"]["skipped"]
    assert list((stack.settings.data_dir / "worktrees").iterdir()) == []


def test_opencode_dying_mid_chat_rolls_back(
    origin: Origin, stack_factory: StackFactory, repo: str, tmp_path: Path
) -> None:
    server = start_opencode(tmp_path / "opencode")
    try:
        stack = stack_factory(origin.base_url, OPENCODE_URL=server.url)
        stack.api.clone(repo)
        with repo_lock(Redis.from_url(stack.settings.redis_url), parse_repo(repo), "test", ttl=30, wait=5):
            accepted = stack.client.post("/admin/chats", json={"repo": repo, "prompt": "never sent"})
            assert accepted.status_code == 202
            server.stop()  # opencode goes away after the request was accepted
        done = stack.api.wait(accepted.get_json())
    finally:
        server.stop()
    assert done["status"] == "failed"
    assert done["error"].startswith("chat failed in phase session:") and "rolled back" in done["error"]
    assert list((stack.settings.data_dir / "worktrees").iterdir()) == []
    bare = stack.settings.data_dir / "repos" / repo.replace("/", "__")
    assert git("for-each-ref", "refs/heads/", cwd=bare) == ""  # the new branch went too


def test_a_chat_that_never_gets_memory_fails_saying_so(
    origin: Origin, stack_factory: StackFactory, repo: str, opencode_url: str
) -> None:
    """No headroom ever (a 1 MB limit): the chat waits, then fails with a sentence, and nothing is made."""
    stack = stack_factory(
        origin.base_url, OPENCODE_URL=opencode_url, MECODES_MEMORY_LIMIT_MB="1", MECODES_CHAT_MEMORY_WAIT="2"
    )
    accepted = stack.client.post("/admin/chats", json={"repo": repo, "prompt": "never started"})
    assert accepted.status_code == 202
    done = stack.api.wait(accepted.get_json())
    assert done["status"] == "failed"
    assert done["error"].startswith("no memory for a new chat after 2 s (waiting for memory: 0 MB free of 1 MB")
    assert done["error"].endswith("stop or delete chats, then try again")
    assert list((stack.settings.data_dir / "worktrees").iterdir()) == []
