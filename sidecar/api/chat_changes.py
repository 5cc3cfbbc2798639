"""A chat's changes as git sees them in its worktree (domain/changes.py): the uncommitted ones and the chat's own
commits, a page of files at a time, or one file. Short, local, read-only git queries, run in the request; they
need no opencode while the chat's worktree is there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema

from domain.changes import NoSuchChange, changes_page, file_change
from domain.gitcmd import GitError
from domain.inventory import WorktreeInfo, find_by_opencode_session
from domain.names import parse_session_id
from sidecar.api.chats import opencode
from sidecar.api.errors import parse_path
from sidecar.schemas import ChangeFileQuery, ChangeFileSchema, ChangesQuery, ChangesSchema
from sidecar.services import services

blp = Blueprint("chat_changes", __name__, url_prefix="/admin/chats", description="One chat: its changes, from git")


def _worktree(session_id: str) -> WorktreeInfo:
    """The chat's worktree; 404 for no chat, 409 when its worktree was removed."""
    session_id = parse_path("session_id", parse_session_id, session_id)
    svc = services()
    info = find_by_opencode_session(svc.layout, svc.git, session_id)
    if info is not None and info.exists:
        return info
    session = opencode().session(session_id) if info is None else None
    if info is None and session is None:
        abort(404, message=f"no chat with session {session_id}")
    branch = info.branch if info else (((session or {}).get("metadata") or {}).get("mecodes") or {}).get("branch")
    _gone(branch)


def _gone(branch: str | None) -> NoReturn:
    kept = f" (its branch {branch} is kept)" if branch else ""
    abort(409, message=f"this chat's worktree was removed{kept}, so there are no changes to show: make it again first")


def _read(info: WorktreeInfo, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read()
    except GitError as exc:
        if not (info.path / ".git").exists():  # removed while git read it
            _gone(info.branch)
        abort(503, message=f"git could not read this chat's changes: {exc}")


@blp.route("/<session_id>/changes")
class Changes(MethodView):
    @blp.arguments(ChangesQuery, location="query")
    @blp.response(200, ChangesSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such chat")
    @blp.alt_response(409, schema=ErrorSchema, description="the chat's worktree was removed")
    @blp.alt_response(503, schema=ErrorSchema, description="git could not read the worktree, or opencode is down")
    def get(self, query: dict[str, Any], session_id: str) -> dict[str, Any]:
        """The chat's changes, as git sees them in its worktree: the uncommitted files (new and untracked, modified,
        deleted, renamed, binary) and the chat's own commits (those not on origin's default branch), newest first,
        25 files a page, each with its patch (cut at 256 KB; a page's patches keep under 1 MB, a file's that would
        not fit is `omitted`)."""
        info = _worktree(session_id)
        svc = services()
        return _read(info, lambda: changes_page(svc.layout, svc.git, info, query["page"]))


@blp.route("/<session_id>/changes/file")
class ChangedFile(MethodView):
    @blp.arguments(ChangeFileQuery, location="query")
    @blp.response(200, ChangeFileSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="no such chat, commit of the chat, or changed file")
    @blp.alt_response(409, schema=ErrorSchema, description="the chat's worktree was removed")
    @blp.alt_response(503, schema=ErrorSchema, description="git could not read the worktree, or opencode is down")
    def get(self, query: dict[str, Any], session_id: str) -> dict[str, Any]:
        """One changed file with its patch: of the uncommitted changes, or of one of the chat's commits (`commit`)."""
        info = _worktree(session_id)
        svc = services()
        try:
            return _read(info, lambda: file_change(svc.layout, svc.git, info, query["path"], query["commit"]))
        except NoSuchChange as exc:
            abort(404, message=str(exc))
