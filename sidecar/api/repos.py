"""The repo cache: clone or refresh, list, delete."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema
from rq.job import Job

from domain.gitcmd import GitError
from domain.inventory import RepoInfo, cached_repos, repo_info, repo_worktrees
from domain.names import RepoName, parse_repo
from sidecar.api.errors import parse_path
from sidecar.api.jobs import job_view
from sidecar.schemas import CloneRequest, ForceQuery, JobSchema, RepoListSchema
from sidecar.services import services

blp = Blueprint("repos", __name__, url_prefix="/admin/repos", description="Bare clones cached on the volume")


@blp.route("/clone")
class Clone(MethodView):
    @blp.arguments(CloneRequest)
    @blp.response(202, JobSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Clone a repo into the cache (or fetch it when cached). Same repo (in any case) while a job is active: same
        job."""
        return job_view(clone_job(parse_repo(body["repo"])))


def clone_job(repo: RepoName) -> Job:
    """The repo's clone (or refresh) job: the one in flight for it, whatever case it was asked in, else a new one."""
    job, _ = services().jobs.active_or_enqueue(
        f"clone:{repo.key}", "clone", "worker.jobs.clone_repo", str(repo), asks=[repo.key]
    )
    return job


@blp.route("")
class Repos(MethodView):
    @blp.response(200, RepoListSchema)
    def get(self) -> dict[str, Any]:
        """Cached repos, read from disk."""
        svc = services()
        infos = [info for repo in cached_repos(svc.layout) if (info := _info_if_still_there(repo))]
        return {"repos": [{**vars(i), "repo": str(i.repo), "path": str(i.path)} for i in infos]}


def _info_if_still_there(repo: RepoName) -> RepoInfo | None:
    svc = services()
    try:
        return repo_info(svc.layout, svc.git, repo)
    except GitError:
        if svc.layout.is_cached(repo):
            raise
        return None  # removed while we looked


@blp.route("/<owner>/<name>")
class Repo(MethodView):
    @blp.arguments(ForceQuery, location="query")
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="not cached")
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="worktrees exist and force is not set, or a delete with the other force is in flight",
    )
    def delete(self, query: dict[str, Any], owner: str, name: str) -> dict[str, Any]:
        """Remove a cached repo; with force=true its worktrees (and any work in them) go too."""
        repo = parse_path("repo", parse_repo, f"{owner}/{name}")
        svc = services()
        if not svc.layout.is_cached(repo):
            abort(404, message=f"{repo} is not cached")
        sessions = [w.session_id for w in repo_worktrees(svc.layout, svc.git, repo, with_state=False)]
        if sessions and not query["force"]:
            abort(
                409,
                message=f"{repo} has {len(sessions)} worktree(s); delete them first or use force=true",
                errors={"sessions": sessions},
            )
        job, _ = svc.jobs.active_or_enqueue(
            f"delete-repo:{repo.key}",
            "delete_repo",
            "worker.jobs.delete_repo",
            str(repo),
            query["force"],
            asks=[repo.key, query["force"]],
        )
        return job_view(job)
