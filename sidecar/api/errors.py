"""Turning refused input into 4xx JSON errors that name the field."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from apispec import BasePlugin
from flask import current_app, request
from flask_smorest import abort
from marshmallow import Schema

from domain.gitcmd import Git
from domain.inventory import branch_holder, work_state
from domain.names import InvalidName, RepoName
from domain.opencode import Opencode, OpencodeError, OpencodeUnavailable
from sidecar.services import Services

T = TypeVar("T")
JSON = "application/json"


def invalid(location: str, field: str, message: str) -> NoReturn:
    abort(422, message=f"invalid {field}: {message}", errors={location: {field: [message]}})


def parse_path(field: str, parser: Callable[[str], T], value: str) -> T:
    try:
        return parser(value)
    except InvalidName as exc:
        invalid("path", field, str(exc))


def refuse_if_holding_work(git: Git, worktree: Path, what: str) -> None:
    """409, naming the work, when the worktree holds uncommitted changes or commits on no remote branch."""
    state = work_state(git, worktree)
    if state.holds_work:
        abort(
            409,
            message=f"{what} holds {state.describe()}; push it or use force=true",
            errors={"dirty": state.dirty, "unpushed_commits": state.unpushed_commits},
        )


def refuse_if_branch_taken(svc: Services, repo: RepoName, branch: str, session_id: str) -> None:
    """409 naming the chat whose worktree has `branch` checked out (git allows a branch in one worktree only), with
    its title when opencode answers; never a server path."""
    holder = branch_holder(svc.layout, svc.git, repo, branch, session_id)
    if holder is None:
        return
    title = _session_title(svc.settings.opencode_url, holder.opencode_session)
    chat = f"chat {holder.chat}" + (f' "{title}"' if title else "")
    message = f"branch {branch} is already checked out in the worktree of {chat}; pick another branch or end that chat"
    abort(
        409,
        message=message,
        errors={"json": {"branch": [message]}, "chat": {"session_id": holder.chat, "title": title}},
    )


def _session_title(opencode_url: str, session_id: str | None) -> str | None:
    if session_id:
        with contextlib.suppress(OpencodeUnavailable, OpencodeError):
            return (Opencode(opencode_url, timeout=3).session(session_id) or {}).get("title")
    return None


def refuse_unless_json() -> None:
    """415 for a body that is not JSON sent to an endpoint that reads one (webargs would see no body at all and
    answer 422 "missing data" for fields that are there). An empty body passes where every field is optional: it
    asks for the defaults."""
    schema = json_body_schema()
    if schema is None or request.is_json:
        return
    if not request.get_data(cache=True) and not any(field.required for field in schema.fields.values()):
        return
    message = f"the body must be JSON, sent with Content-Type: {JSON} (got {request.mimetype or 'none'})"
    abort(415, message=message, errors={"headers": {"Content-Type": [f"expected {JSON}"]}})


def json_body_schema() -> Schema | None:
    """The schema of the JSON body the matched endpoint reads (its flask-smorest `@blp.arguments`), if any."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, request.method.lower(), None) if view_class else view
    for parameter in getattr(handler, "_apidoc", {}).get("arguments", {}).get("parameters", []):
        if parameter["in"] == "json":
            schema = parameter["schema"]
            return schema() if isinstance(schema, type) else schema
    return None


class UnsupportedMediaTypeDoc(BasePlugin):
    """Documents refuse_unless_json's 415 on every operation that takes a request body."""

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any) -> None:
        for operation in (operations or {}).values():
            if "requestBody" in operation:
                operation.setdefault("responses", {})[415] = "UNSUPPORTED_MEDIA_TYPE"
