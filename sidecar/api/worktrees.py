"""Per-session worktrees: create (cloning first when needed), list with their unsaved work, delete."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema

from domain.agent_instances import Instances
from domain.inventory import WorktreeInfo, all_worktrees, find_worktree
from domain.names import parse_repo, parse_session_id
from domain.opencode import IDLE, Opencode, OpencodeError, OpencodeUnavailable
from sidecar.api.errors import parse_path, refuse_if_branch_taken, refuse_if_holding_work
from sidecar.api.jobs import job_view
from sidecar.api.repos import clone_job
from sidecar.schemas import ForceQuery, JobSchema, WorktreeListSchema, WorktreeRequest
from sidecar.services import services

blp = Blueprint("worktrees", __name__, url_prefix="/admin/worktrees", description="One git worktree per session")


def worktree_view(w: WorktreeInfo, session: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "repo": str(w.repo),
        "session_id": w.session_id,
        "path": str(w.path),
        "branch": w.branch,
        "head": w.head,
        "exists": w.exists,
        "dirty": w.state.dirty if w.state else None,
        "unpushed_commits": w.state.unpushed_commits if w.state else None,
        "created_at": w.created_at,
        "opencode_session_id": w.opencode_session,
        "title": (session or {}).get("title"),
        "status": (session or {}).get("status"),
    }


def _sessions(worktrees: list[WorktreeInfo]) -> dict[str, dict[str, Any]]:
    """Title and status of the linked opencode sessions; empty when opencode cannot be asked."""
    linked = [w for w in worktrees if w.opencode_session]
    if not linked:
        return {}
    client = Opencode(services().settings.opencode_url, timeout=3)
    wanted = {w.opencode_session for w in linked}
    try:
        sessions = [s for s in client.sessions() if s["id"] in wanted]
        statuses = Instances(client, services().jobs.redis).statuses(sessions)
    except (OpencodeUnavailable, OpencodeError):
        return {}
    return {s["id"]: {"title": s.get("title"), "status": statuses.get(s["id"], IDLE)} for s in sessions}


@blp.route("")
class Worktrees(MethodView):
    @blp.arguments(WorktreeRequest)
    @blp.response(202, JobSchema)
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="`branch` is checked out in another chat's worktree (named), or a request for this session with"
        " other arguments is in flight",
    )
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the session's worktree on a new branch (or check out `branch`). Clones first if needed."""
        svc = services()
        repo = parse_repo(body["repo"])
        session_id, branch = body["session_id"], body["branch"]
        if branch:
            refuse_if_branch_taken(svc, repo, branch, session_id)
        cloning = None if svc.layout.is_cached(repo) else clone_job(repo)
        job, _ = svc.jobs.active_or_enqueue(
            f"worktree:{repo.key}:{session_id}",
            "worktree",
            "worker.jobs.create_worktree",
            str(repo),
            session_id,
            branch,
            cloning.id if cloning else None,
            depends_on=cloning,
            asks=[repo.key, session_id, branch],
        )
        return job_view(job)

    @blp.response(200, WorktreeListSchema)
    def get(self) -> dict[str, Any]:
        """Every worktree, read from disk and git, with its uncommitted and unpushed work, and the opencode session
        it belongs to (title and status, when opencode answers)."""
        svc = services()
        found = all_worktrees(svc.layout, svc.git)
        sessions = _sessions(found)
        return {"worktrees": [worktree_view(w, sessions.get(w.opencode_session or "")) for w in found]}


@blp.route("/<owner>/<name>/<session_id>")
class Worktree(MethodView):
    @blp.arguments(ForceQuery, location="query")
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such worktree")
    @blp.alt_response(
        409,
        schema=ErrorSchema,
        description="holds uncommitted or unpushed work, or a delete with the other force is in flight",
    )
    def delete(self, query: dict[str, Any], owner: str, name: str, session_id: str) -> dict[str, Any]:
        """Remove a worktree (its branch is kept). Refused while it holds work, unless force=true."""
        repo = parse_path("repo", parse_repo, f"{owner}/{name}")
        session_id = parse_path("session_id", parse_session_id, session_id)
        svc = services()
        info = find_worktree(svc.layout, svc.git, repo, session_id)
        if info is None:
            abort(404, message=f"no worktree for session {session_id} of {repo}")
        if info.exists and not query["force"]:
            refuse_if_holding_work(svc.git, info.path, f"worktree of session {session_id}")
        job, _ = svc.jobs.active_or_enqueue(
            f"delete-worktree:{repo.key}:{session_id}",
            "delete_worktree",
            "worker.jobs.delete_worktree",
            str(repo),
            session_id,
            query["force"],
            asks=[repo.key, session_id, query["force"]],
        )
        return job_view(job)
