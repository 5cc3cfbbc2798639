"""Job polling, de-duplication and dependencies between jobs."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from flask.testing import FlaskClient
from redis import Redis
from werkzeug.test import TestResponse

from domain.config import Settings
from domain.locks import repo_lock
from domain.names import parse_repo
from tests.conftest import Api, Origin


def test_same_repo_twice_gives_the_same_job(client: FlaskClient, api: Api, repo_name: str, settings) -> None:
    # Hold the repo's lock so the job stays active (started, waiting) while the requests arrive.
    with repo_lock(Redis.from_url(settings.redis_url), parse_repo(repo_name), "test", ttl=30, wait=5):
        with ThreadPoolExecutor(8) as pool:
            post = lambda _: client.post("/admin/repos/clone", json={"repo": repo_name})  # noqa: E731
            responses = list(pool.map(post, range(8)))
        assert {r.status_code for r in responses} == {202}
        ids = {r.get_json()["id"] for r in responses}
        assert len(ids) == 1, ids
        assert client.get(responses[0].get_json()["url"]).get_json()["status"] in {"queued", "started"}
    job = api.wait(responses[0].get_json())
    assert job["status"] == "finished"
    # Once the job is over, a new request is a new job (a refresh).
    again = client.post("/admin/repos/clone", json={"repo": repo_name}).get_json()
    assert again["id"] not in ids


def test_job_shape_and_listing(client: FlaskClient, api: Api, repo_name: str) -> None:
    accepted = client.post("/admin/repos/clone", json={"repo": repo_name})
    assert accepted.status_code == 202
    body = accepted.get_json()
    assert body["status"] in {"queued", "started", "finished"}
    assert body["url"] == f"/admin/jobs/{body['id']}"
    done = api.wait(body)
    assert done["kind"] == "clone"
    assert done["created_at"] and done["started_at"] and done["ended_at"]
    assert done["error"] is None
    assert done["progress"]["step"] == "cloning"

    listed = client.get("/admin/jobs?limit=500").get_json()["jobs"]
    assert body["id"] in [j["id"] for j in listed]
    created = [j["created_at"] for j in listed]
    assert created == sorted(created, reverse=True)


def test_unknown_job_is_404(client: FlaskClient) -> None:
    response = client.get("/admin/jobs/doesnotexist0000")
    assert response.status_code == 404
    assert "doesnotexist0000" in response.get_json()["message"]


def test_worktree_waits_for_clone_and_fails_when_it_fails(client: FlaskClient, api: Api) -> None:
    response = client.post("/admin/worktrees", json={"repo": "nobody/missing-repo", "session_id": "s1"})
    assert response.status_code == 202
    job = response.get_json()
    assert len(job["depends_on"]) == 1
    clone = api.wait({"url": f"/admin/jobs/{job['depends_on'][0]}", "id": job["depends_on"][0]})
    assert clone["status"] == "failed"
    assert "git clone" in clone["error"]
    done = api.wait(job, timeout=30)
    assert done["status"] == "failed"
    assert "clone this worktree needs failed" in done["error"]


def test_worktree_on_uncached_repo_clones_first(client: FlaskClient, api: Api, repo_name: str) -> None:
    done = api.worktree(repo_name, "first")
    assert done["status"] == "finished", done
    assert done["result"]["repo_action"] == "up to date"  # the clone job just fetched everything
    repos = [r["repo"] for r in client.get("/admin/repos").get_json()["repos"]]
    assert repo_name in repos


def test_a_repo_asked_in_two_cases_at_once_is_one_job(
    client: FlaskClient, api: Api, origin: Origin, settings: Settings
) -> None:
    name = f"Case{uuid.uuid4().hex[:6]}/Repo"
    origin.create(name)
    with repo_lock(Redis.from_url(settings.redis_url), parse_repo(name), "test", ttl=30, wait=5):
        asked = [client.post("/admin/repos/clone", json={"repo": r}) for r in (name, name.lower(), name.upper())]
        assert {r.status_code for r in asked} == {202}
        assert len({r.get_json()["id"] for r in asked}) == 1
    assert api.wait(asked[0].get_json())["status"] == "finished"


def test_a_request_joins_a_job_in_flight_only_when_it_asks_the_same(
    client: FlaskClient, api: Api, repo_name: str, settings: Settings
) -> None:
    """Same session, different branches, at once: one job for the branch that came first (joined by its twin),
    409 naming that job for the other; nobody is told their worktree is on a branch they did not ask for."""
    api.clone(repo_name)
    branches = ["fa", "fb", "fa", "fb"]

    def post(branch: str) -> TestResponse:
        return client.post("/admin/worktrees", json={"repo": repo_name, "session_id": "twice", "branch": branch})

    # The repo's lock keeps the first job in flight (started, waiting) while the requests arrive.
    lock = repo_lock(Redis.from_url(settings.redis_url), parse_repo(repo_name), "test", ttl=30, wait=5)
    with lock, ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(post, branches))
    accepted = {b: r.get_json() for b, r in zip(branches, responses, strict=True) if r.status_code == 202}
    refused = [(b, r.get_json()) for b, r in zip(branches, responses, strict=True) if r.status_code == 409]
    assert len(accepted) == 1 and len(refused) == 2, [r.get_json() for r in responses]
    (winner, job), loser = next(iter(accepted.items())), {b for b, _ in refused}
    assert loser == {"fb" if winner == "fa" else "fa"}
    for _, body in refused:
        assert body["errors"]["job"] == {"id": job["id"], "url": job["url"]} and job["id"] in body["message"]
    assert len({r.get_json()["id"] for r in responses if r.status_code == 202}) == 1  # the twin joined
    assert api.wait(job)["result"]["branch"] == winner


def test_concurrent_requests_with_different_branches_never_share_a_job(
    client: FlaskClient, api: Api, repo_name: str
) -> None:
    """The same race without holding anything: whatever the timing, each accepted request's job is its own."""
    api.clone(repo_name)
    for attempt in range(5):
        session, branches = f"race-{attempt}", [f"fa-{attempt}", f"fb-{attempt}"]

        def post(branch: str, session: str = session) -> TestResponse:
            return client.post("/admin/worktrees", json={"repo": repo_name, "session_id": session, "branch": branch})

        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(post, branches))
        assert {r.status_code for r in responses} <= {202, 409}, [r.get_json() for r in responses]
        accepted = {b: r.get_json() for b, r in zip(branches, responses, strict=True) if r.status_code == 202}
        assert len({job["id"] for job in accepted.values()}) == len(accepted)
        for branch, job in accepted.items():
            done = api.wait(job)
            if done["status"] == "finished":
                assert done["result"]["branch"] == branch
            else:
                assert "already has a worktree on branch" in done["error"], done
