"""Fire-and-forget chats: one request starts an agent on a fresh worktree; list and take chats down."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema

from domain.agent_instances import Instances
from domain.attachments import stash
from domain.chat_list import chat_entries
from domain.chats import require_commits_to_push
from domain.interruptions import Restarts
from domain.inventory import default_branch, find_by_opencode_session
from domain.names import parse_model, parse_repo, parse_session_id
from domain.opencode import Opencode
from domain.repo_ops import Refused
from sidecar.api.agent_options import refuse_unless_offered
from sidecar.api.attachments import checked_parts
from sidecar.api.errors import invalid, parse_path, refuse_if_branch_taken, refuse_if_holding_work
from sidecar.api.jobs import job_view
from sidecar.schemas import ChatListSchema, ForceQuery, JobSchema, NewChatRequest, PushRequest
from sidecar.services import services

IMAGES_KEPT_EXTRA = 3600  # seconds a new chat's images are kept beyond its longest wait for memory: queue, clone

blp = Blueprint("chats", __name__, url_prefix="/admin/chats", description="Chats: an agent on a worktree of its own")


def opencode() -> Opencode:
    """The opencode client, after checking opencode answers (else a 503 naming it, before anything is made)."""
    client = Opencode(services().settings.opencode_url)
    client.check()
    return client


@blp.route("")
class Chats(MethodView):
    @blp.arguments(NewChatRequest)
    @blp.response(202, JobSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="`branch` is checked out in another chat's worktree (named)")
    @blp.alt_response(413, schema=ErrorSchema, description="the images come to more than MECODES_ATTACHMENTS_MAX_MB")
    @blp.alt_response(503, schema=ErrorSchema, description="opencode (or Redis) is unavailable")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Clone or refresh the repo, make a worktree on a new branch, create an opencode session in it and send
        the prompt (with `model`, `agent` and images when given). The job's progress names each phase; its result
        has the session id and the URL to open."""
        client = opencode()
        repo, prompt = parse_repo(body["repo"]), body["prompt"]
        title = body["title"] or (prompt.strip().splitlines()[0][:80] if prompt and prompt.strip() else str(repo))
        if body["attachments"] and not prompt:
            invalid("json", "attachments", "images go with a task: give the prompt too")
        files = checked_parts(body["attachments"])
        refuse_unless_offered(client, body["model"], body["agent"], bool(files))
        model = parse_model(body["model"]) if body["model"] else None
        label = f"chat-{uuid.uuid4().hex[:12]}"
        if body["branch"]:
            refuse_if_branch_taken(services(), repo, body["branch"], label)
        stash(services().jobs.redis, label, files, services().settings.chat_memory_wait + IMAGES_KEPT_EXTRA)
        job = services().jobs.enqueue(
            "chat",
            "worker.jobs.create_chat",
            str(repo),
            label,
            body["branch"],
            title,
            prompt,
            model,
            body["agent"],
            bool(files),
            waits=services().settings.chat_memory_wait,
        )
        return job_view(job)

    @blp.response(200, ChatListSchema)
    @blp.alt_response(503, schema=ErrorSchema, description="opencode is unavailable")
    def get(self) -> dict[str, Any]:
        """opencode's sessions joined with the worktrees, newest activity first; sessions without a worktree and
        worktrees without a session are listed too (`has_session`, `has_worktree`)."""
        svc = services()  # no health check first: a down opencode fails the session list with the same 503
        client = Opencode(svc.settings.opencode_url)
        instances = Instances(client, svc.jobs.redis, Restarts.read(svc.settings))
        return {"chats": chat_entries(svc.layout, svc.git, instances)}


@blp.route("/<session_id>")
class Chat(MethodView):
    @blp.arguments(ForceQuery, location="query")
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such session or worktree")
    @blp.alt_response(409, schema=ErrorSchema, description="the worktree holds uncommitted or unpushed work")
    @blp.alt_response(503, schema=ErrorSchema, description="opencode is unavailable")
    def delete(self, query: dict[str, Any], session_id: str) -> dict[str, Any]:
        """Abort the session if busy, remove its worktree (refused while it holds work unless force=true), then
        delete the session. A chat still being created has its creation job cancelled instead (see
        `DELETE /admin/jobs/{id}`): the answer is that job, which ends `canceled` with what it made rolled back."""
        session_id = parse_path("session_id", parse_session_id, session_id)
        svc = services()
        if (creating := svc.jobs.creating_chat(session_id)) is not None:
            svc.jobs.cancel(creating)
            return job_view(svc.jobs.fetch(creating.id) or creating)
        client = opencode()
        worktree = find_by_opencode_session(svc.layout, svc.git, session_id)
        if worktree is None and client.session(session_id) is None:
            abort(404, message=f"no chat with session {session_id}")
        if worktree is not None and worktree.exists and not query["force"]:
            refuse_if_holding_work(svc.git, worktree.path, "the chat's worktree")
        job, _ = svc.jobs.active_or_enqueue(
            f"delete-chat:{session_id}", "delete_chat", "worker.jobs.delete_chat", session_id, query["force"]
        )
        return job_view(job)


@blp.route("/<session_id>/push")
class Push(MethodView):
    @blp.arguments(PushRequest)
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no worktree for that session")
    @blp.alt_response(409, schema=ErrorSchema, description="nothing to push")
    @blp.alt_response(503, schema=ErrorSchema, description="no GitHub token")
    def post(self, body: dict[str, Any], session_id: str) -> dict[str, Any]:
        """Push the chat's branch to origin and open a pull request against the default branch (or return the
        open one). The job's result has the branch, the pushed commit and the pull request's URL."""
        session_id = parse_path("session_id", parse_session_id, session_id)
        svc = services()
        if not svc.settings.github_token:
            abort(503, message="GITHUB_TOKEN is not set, so nothing can be pushed to GitHub")
        worktree = find_by_opencode_session(svc.layout, svc.git, session_id)
        base = default_branch(svc.layout.repo_path(worktree.repo)) if worktree else None
        if worktree is None or not worktree.exists or not base:
            abort(404, message=f"no worktree for session {session_id}")
        try:
            require_commits_to_push(svc.git, worktree.path, base)
        except Refused as refused:
            abort(409, message=str(refused))
        job, _ = svc.jobs.active_or_enqueue(
            f"push:{session_id}",
            "push",
            "worker.jobs.push_chat_branch",
            session_id,
            body["title"],
            body["body"],
            body["draft"],
        )
        return job_view(job)
