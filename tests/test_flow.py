"""The main flow through the API: clone, refresh, worktree, list, delete — with a real worker and git."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Api, Origin, git


def test_clone_then_refresh(api: Api, origin: Origin, repo_name: str, settings) -> None:
    job = api.clone(repo_name)
    assert job["status"] == "finished", job
    assert job["kind"] == "clone"
    assert job["result"]["action"] == "cloned"
    assert job["result"]["default_branch"] == "main"
    bare = Path(job["result"]["path"])
    assert bare.parent == settings.data_dir / "repos"
    refs = git("for-each-ref", "--format=%(refname)", cwd=bare).split()
    assert "refs/remotes/origin/main" in refs and "refs/remotes/origin/feature" in refs
    assert not [r for r in refs if r.startswith("refs/heads/")]

    new_head = origin.push_commit(repo_name)
    again = api.clone(repo_name)
    assert again["result"]["action"] == "fetched"
    assert git("rev-parse", "refs/remotes/origin/main", cwd=bare).strip() == new_head


def test_worktree_lifecycle(api: Api, repo_name: str) -> None:
    job = api.worktree(repo_name, "ses_one")
    assert job["status"] == "finished", job
    result = job["result"]
    assert result["branch"] == "mecodes/ses_one"
    path = Path(result["path"])
    assert path.name.endswith("__ses_one") and (path / "file0.txt").exists()
    assert git("rev-parse", "HEAD", cwd=path).strip() == result["head"]

    listed = api.client.get("/admin/worktrees").get_json()["worktrees"]
    mine = [w for w in listed if w["session_id"] == "ses_one" and w["repo"] == repo_name]
    assert mine and mine[0]["dirty"] is False and mine[0]["unpushed_commits"] == 0

    repos = {r["repo"]: r for r in api.client.get("/admin/repos").get_json()["repos"]}
    assert repos[repo_name]["worktree_count"] == 1
    assert repos[repo_name]["size_bytes"] > 0 and repos[repo_name]["last_fetch"]

    (path / "new.txt").write_text("work in progress")
    owner, name = repo_name.split("/")
    refused = api.client.delete(f"/admin/worktrees/{owner}/{name}/ses_one")
    assert refused.status_code == 409
    assert "uncommitted" in refused.get_json()["message"]
    assert path.exists()

    forced = api.client.delete(f"/admin/worktrees/{owner}/{name}/ses_one?force=true")
    assert forced.status_code == 202
    assert api.wait(forced.get_json())["status"] == "finished"
    assert not path.exists()
