"""Worktree creation rules (branches, idempotence) and the no-data-loss rules for deletion."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from redis import Redis

from domain.config import Settings
from domain.locks import LockTimeout, lock_key, repo_lock
from domain.names import parse_repo
from tests.conftest import Api, Origin, git


def _delete(client: FlaskClient, repo: str, session: str, force: bool = False):
    return client.delete(f"/admin/worktrees/{repo}/{session}" + ("?force=true" if force else ""))


def test_branch_choices(api: Api, repo_name: str) -> None:
    tracked = api.worktree(repo_name, "s-remote", branch="feature")["result"]
    assert tracked["branch"] == "feature"
    upstream = git("rev-parse", "--abbrev-ref", "@{upstream}", cwd=Path(tracked["path"])).strip()
    assert upstream == "origin/feature"

    fresh = api.worktree(repo_name, "s-new", branch="topic/new-thing")["result"]
    assert fresh["branch"] == "topic/new-thing"
    default = api.worktree(repo_name, "s-default")["result"]
    assert fresh["head"] == default["head"]  # both start from origin/main
    assert "upstream" not in git("branch", "-vv", cwd=Path(default["path"]))


def test_same_session_again_returns_the_existing_worktree(api: Api, repo_name: str) -> None:
    first = api.worktree(repo_name, "again")["result"]
    second = api.worktree(repo_name, "again")
    assert second["status"] == "finished"
    assert second["result"]["created"] is False and second["result"]["path"] == first["path"]
    other_branch = api.worktree(repo_name, "again", branch="feature")
    assert other_branch["status"] == "failed" and "already has a worktree" in other_branch["error"]


def test_worktree_starts_from_a_fresh_fetch(api: Api, origin: Origin, repo_name: str) -> None:
    api.clone(repo_name)
    head = origin.push_commit(repo_name, "newer")
    result = api.worktree(repo_name, "fresh")["result"]
    assert result["head"] == head


def test_unpushed_commits_block_deletion(client: FlaskClient, api: Api, repo_name: str) -> None:
    path = Path(api.worktree(repo_name, "committed")["result"]["path"])
    (path / "work.txt").write_text("done")
    git("add", "work.txt", cwd=path)
    git("commit", "-q", "-m", "agent work", cwd=path)
    listed = {w["session_id"]: w for w in client.get("/admin/worktrees").get_json()["worktrees"]}
    assert listed["committed"]["unpushed_commits"] == 1 and listed["committed"]["dirty"] is False

    refused = _delete(client, repo_name, "committed")
    assert refused.status_code == 409
    assert "1 commit(s) not on any remote branch" in refused.get_json()["message"]

    git("push", "-q", "origin", "HEAD", cwd=path)  # pushed: nothing to lose any more
    git("fetch", "-q", "origin", cwd=path)
    accepted = _delete(client, repo_name, "committed")
    assert accepted.status_code == 202
    assert api.wait(accepted.get_json())["status"] == "finished"
    assert not path.exists()
    owner_slug = Path(path).name.rsplit("__", 1)[0]
    bare = path.parent.parent / "repos" / owner_slug
    assert git("rev-parse", "--verify", "refs/heads/mecodes/committed", cwd=bare)  # branch kept


def test_work_appearing_after_the_check_still_blocks(
    client: FlaskClient, api: Api, repo_name: str, settings: Settings
) -> None:
    """The job checks again under the lock, so work written between the request and the job is not lost."""
    path = Path(api.worktree(repo_name, "late")["result"]["path"])
    with repo_lock(Redis.from_url(settings.redis_url), parse_repo(repo_name), "test", ttl=30, wait=5):
        accepted = _delete(client, repo_name, "late")
        assert accepted.status_code == 202  # clean when asked
        (path / "late.txt").write_text("written while the job waited for the lock")
    done = api.wait(accepted.get_json())
    assert done["status"] == "failed" and "uncommitted" in done["error"]
    assert (path / "late.txt").exists()


def test_folder_deleted_by_hand(client: FlaskClient, api: Api, repo_name: str) -> None:
    import shutil

    path = Path(api.worktree(repo_name, "gone")["result"]["path"])
    shutil.rmtree(path)
    listed = {w["session_id"]: w for w in client.get("/admin/worktrees").get_json()["worktrees"]}
    assert listed["gone"]["exists"] is False and listed["gone"]["dirty"] is None
    accepted = _delete(client, repo_name, "gone")
    assert accepted.status_code == 202
    assert api.wait(accepted.get_json())["result"]["removed"] == "stale entry pruned"
    assert _delete(client, repo_name, "gone").status_code == 404


def test_unknown_worktree_is_404(client: FlaskClient, repo_name: str) -> None:
    assert _delete(client, repo_name, "nosuch").status_code == 404  # repo not cached
    assert _delete(client, "someone/else", "nosuch").status_code == 404


def test_delete_repo(client: FlaskClient, api: Api, repo_name: str, settings) -> None:
    path = Path(api.worktree(repo_name, "keeper")["result"]["path"])
    refused = client.delete(f"/admin/repos/{repo_name}")
    assert refused.status_code == 409
    assert refused.get_json()["errors"]["sessions"] == ["keeper"]

    accepted = client.delete(f"/admin/repos/{repo_name}?force=true")
    assert accepted.status_code == 202
    done = api.wait(accepted.get_json())
    assert done["status"] == "finished" and done["result"]["removed_worktrees"] == ["keeper"]
    assert not path.exists()
    assert repo_name not in [r["repo"] for r in client.get("/admin/repos").get_json()["repos"]]
    assert client.delete(f"/admin/repos/{repo_name}").status_code == 404
    assert list((settings.data_dir / "tmp").iterdir()) == []


def test_a_folder_removed_while_listing_is_no_error(settings: Settings, tmp_path: Path) -> None:
    """A worktree removed between git listing it and its state being read: a GitError, so no state, not a 500."""
    from domain.gitcmd import Git, GitError
    from domain.inventory import _state_or_none

    gone = tmp_path / "gone"
    with pytest.raises(GitError, match="could not start"):
        Git(settings).run(["status"], cwd=gone)
    assert _state_or_none(Git(settings), gone) is None


def test_a_repo_asked_in_another_case_is_the_same_repo(
    client: FlaskClient, api: Api, origin: Origin, settings: Settings
) -> None:
    """GitHub's names are case-insensitive: one cached folder (spelt as first asked), one lock, and its worktrees
    found, collected and removed whatever the case they are asked in."""
    suffix = uuid.uuid4().hex[:6]
    first, other, session = f"Own{suffix}/Trunk", f"own{suffix}/TRUNK", f"s-case-{suffix}"
    origin.create(first)
    cloned = api.clone(first)["result"]
    assert Path(cloned["path"]).name == f"Own{suffix}__Trunk"
    again = api.clone(other)
    assert again["result"]["action"] == "fetched" and again["result"]["path"] == cloned["path"]  # found, not cloned
    same_repo = [p.name for p in (settings.data_dir / "repos").iterdir() if p.name.lower() == f"own{suffix}__trunk"]
    assert same_repo == [f"Own{suffix}__Trunk"]

    redis = Redis.from_url(settings.redis_url)
    assert lock_key(parse_repo(first)) == lock_key(parse_repo(other))
    with (
        repo_lock(redis, parse_repo(first), "test", ttl=30, wait=5),
        pytest.raises(LockTimeout),
        repo_lock(redis, parse_repo(other), "test-2", ttl=30, wait=0.3),
    ):
        pass

    path = Path(api.worktree(other, session)["result"]["path"])
    assert path.name == f"Own{suffix}__Trunk__{session}"  # named after the repo's folder
    repos = [r for r in client.get("/admin/repos").get_json()["repos"] if r["repo"].lower() == first.lower()]
    assert [(r["repo"], r["worktree_count"]) for r in repos] == [(first, 1)]

    # A worktree folder spelt in yet another case (moved by hand) is still listed, collected once and removed.
    moved = path.with_name(f"OWN{suffix}__trunk__{session}")
    git("worktree", "move", str(path), str(moved), cwd=Path(cloned["path"]))
    listed = [w for w in client.get("/admin/worktrees").get_json()["worktrees"] if w["session_id"] == session]
    assert [(w["repo"], w["path"]) for w in listed] == [(first, str(moved))]
    gc = api.wait(client.post("/admin/gc", json={"dry_run": True}).get_json())
    assert [d["action"] for d in gc["result"]["decisions"] if d["path"] == str(moved)] == ["kept"]
    assert [d["name"] for d in gc["result"]["decisions"] if d["kind"] == "repo" and d["name"] == first] == [first]
    deleted = api.wait(_delete(client, other, session).get_json())
    assert deleted["status"] == "finished", deleted
    assert not moved.exists()


def test_a_branch_in_another_worktree_is_409_naming_its_session(
    client: FlaskClient, api: Api, repo_name: str, settings: Settings
) -> None:
    api.worktree(repo_name, "holder", branch="feature")
    refused = client.post("/admin/worktrees", json={"repo": repo_name, "session_id": "second", "branch": "feature"})
    assert refused.status_code == 409, refused.get_json()
    body = refused.get_json()
    assert "branch feature is already checked out in the worktree of chat holder" in body["message"]
    assert body["errors"]["chat"] == {"session_id": "holder", "title": None}
    assert str(settings.data_dir) not in refused.get_data(as_text=True)
    again = api.worktree(repo_name, "holder", branch="feature")  # its own worktree: given back
    assert again["status"] == "finished" and again["result"]["created"] is False


def test_a_branch_taken_while_the_job_waited_is_refused_without_a_path(
    client: FlaskClient, api: Api, repo_name: str, settings: Settings
) -> None:
    """Two requests for one branch at once both pass the API's check; the job checks again under the lock."""
    api.clone(repo_name)
    ask = {"repo": repo_name, "branch": "topic/race"}
    with repo_lock(Redis.from_url(settings.redis_url), parse_repo(repo_name), "test", ttl=30, wait=5):
        first = client.post("/admin/worktrees", json={**ask, "session_id": "race-1"})
        second = client.post("/admin/worktrees", json={**ask, "session_id": "race-2"})
        assert (first.status_code, second.status_code) == (202, 202)
    assert api.wait(first.get_json())["status"] == "finished"
    lost = api.wait(second.get_json())
    assert lost["status"] == "failed"
    assert "branch topic/race is already checked out in the worktree of chat race-1" in lost["error"]
    assert str(settings.data_dir) not in lost["error"]
