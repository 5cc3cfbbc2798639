"""One chat's turns: its state, a message to the agent, carrying on after an interruption, and making its
worktree again when it was removed. The phone sends messages here rather than to opencode, so that a chat whose
worktree is gone is refused with a sentence instead of opencode's stack trace."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema

from domain.agent_instances import Instances
from domain.chat_list import chat_entries
from domain.continuing import NotInterrupted, continue_turn
from domain.interruptions import Restarts
from domain.inventory import WorktreeInfo, find_by_opencode_session
from domain.names import parse_model, parse_session_id
from domain.opencode import Opencode
from sidecar.api.agent_options import refuse_unless_offered
from sidecar.api.attachments import checked_parts
from sidecar.api.chats import opencode
from sidecar.api.errors import parse_path
from sidecar.api.jobs import job_view
from sidecar.schemas import ChatSchema, ContinueResultSchema, JobSchema, PromptRequest, PromptResultSchema
from sidecar.services import services

blp = Blueprint("chat_turns", __name__, url_prefix="/admin/chats", description="One chat: its turns and worktree")


def _chat(session_id: str) -> tuple[Opencode, dict[str, Any], WorktreeInfo | None]:
    """opencode, the chat's session and its worktree (None when it was removed); 404 without a session."""
    session_id = parse_path("session_id", parse_session_id, session_id)
    client = opencode()
    session = client.session(session_id)
    if session is None:
        abort(404, message=f"no chat with session {session_id}")
    svc = services()
    worktree = find_by_opencode_session(svc.layout, svc.git, session_id)
    return client, session, worktree if worktree is not None and worktree.exists else None


def _require_worktree(session: dict[str, Any], worktree: WorktreeInfo | None) -> WorktreeInfo:
    if worktree is None:
        branch = ((session.get("metadata") or {}).get("mecodes") or {}).get("branch")
        kept = f" (its branch {branch} is kept)" if branch else ""
        abort(
            409,
            message=f"this chat's worktree was removed{kept}, so the agent has nowhere to work:"
            " make the worktree again, or delete the chat",
        )
    return worktree


@blp.route("/<session_id>")
class ChatState(MethodView):
    @blp.response(200, ChatSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such chat")
    @blp.alt_response(503, schema=ErrorSchema, description="opencode is unavailable")
    def get(self, session_id: str) -> dict[str, Any]:
        """The chat as the list shows it: status (interrupted with when and why), worktree, work held."""
        session_id = parse_path("session_id", parse_session_id, session_id)
        svc = services()
        instances = Instances(Opencode(svc.settings.opencode_url), svc.jobs.redis, Restarts.read(svc.settings))
        for entry in chat_entries(svc.layout, svc.git, instances):
            if entry["session_id"] == session_id:
                return entry
        abort(404, message=f"no chat with session {session_id}")


@blp.route("/<session_id>/prompt")
class Prompt(MethodView):
    @blp.arguments(PromptRequest)
    @blp.response(200, PromptResultSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such chat")
    @blp.alt_response(409, schema=ErrorSchema, description="the chat's worktree was removed")
    @blp.alt_response(413, schema=ErrorSchema, description="the images come to more than MECODES_ATTACHMENTS_MAX_MB")
    @blp.alt_response(503, schema=ErrorSchema, description="opencode is unavailable")
    def post(self, body: dict[str, Any], session_id: str) -> dict[str, Any]:
        """Send the agent a message in the chat's session, with `model`, `agent` and images when given (opencode
        answers it in the background)."""
        client, session, worktree = _chat(session_id)
        _require_worktree(session, worktree)
        files = checked_parts(body["attachments"])
        refuse_unless_offered(client, body["model"], body["agent"], bool(files))
        model = parse_model(body["model"]) if body["model"] else None
        client.prompt(session["id"], session["directory"], body["text"], model, body["agent"], files)
        return {"session_id": session["id"], "sent": True}


@blp.route("/<session_id>/continue")
class Continue(MethodView):
    @blp.response(200, ContinueResultSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such chat")
    @blp.alt_response(409, schema=ErrorSchema, description="not interrupted, or the worktree was removed")
    @blp.alt_response(503, schema=ErrorSchema, description="opencode is unavailable")
    def post(self, session_id: str) -> dict[str, Any]:
        """Carry on an interrupted turn: close the steps it left running as failed, then ask the agent to keep going
        in the same session, with the same model. Refused while the agent works or when the last turn finished."""
        client, session, worktree = _chat(session_id)
        _require_worktree(session, worktree)
        svc = services()
        try:
            return continue_turn(client, svc.jobs.redis, Restarts.read(svc.settings), session)
        except NotInterrupted as refused:
            abort(409, message=str(refused))


@blp.route("/<session_id>/worktree")
class Worktree(MethodView):
    @blp.response(202, JobSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such chat")
    @blp.alt_response(409, schema=ErrorSchema, description="the chat has its worktree")
    @blp.alt_response(503, schema=ErrorSchema, description="opencode is unavailable")
    def post(self, session_id: str) -> dict[str, Any]:
        """Make a removed chat worktree again, where it was and on its branch, so the chat can go on."""
        _, session, worktree = _chat(session_id)
        if worktree is not None:
            abort(409, message="this chat has its worktree; nothing to make again")
        job, _ = services().jobs.active_or_enqueue(
            f"restore-worktree:{session['id']}", "worktree", "worker.jobs.restore_chat_worktree", session["id"]
        )
        return job_view(job)
