"""Stray processes (in a worktree, or orphaned): list them, kill one (its group) — never the stack's own services."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema

from domain.processes import MAX_PID, ProcessGuard, Refused
from sidecar.api.errors import invalid
from sidecar.schemas import KillResultSchema, ProcessListSchema
from sidecar.services import services

blp = Blueprint("processes", __name__, url_prefix="/admin/processes", description="Stray processes")


def _guard() -> ProcessGuard:
    svc = services()
    return ProcessGuard(svc.layout, svc.settings.stack_pid)


@blp.route("")
class Processes(MethodView):
    @blp.response(200, ProcessListSchema)
    def get(self) -> dict[str, Any]:
        """Processes running in a worktree (whenever they began, whoever their parent is, but the stack's services)
        and processes re-parented to PID 1 since the stack started: pid, command line, cwd (and the worktree it is
        in), why it is listed, age, CPU time, RSS."""
        guard = _guard()
        return {"stack_pid": guard.stack.pid, "processes": [vars(s) for s in guard.strays()]}


@blp.route("/<pid>/kill")
class Kill(MethodView):
    @blp.response(200, KillResultSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="PID 1, the sidecar or a stack service")
    @blp.alt_response(404, schema=ErrorSchema, description="no such process")
    @blp.alt_response(409, schema=ErrorSchema, description="neither in a worktree nor an orphan")
    def post(self, pid: str) -> dict[str, Any]:
        """SIGTERM a listed process, its descendants and its process group, SIGKILL after MECODES_KILL_GRACE
        seconds."""
        if not pid.isascii() or not pid.isdigit() or not 0 < int(pid) <= MAX_PID:
            invalid("path", "pid", f"must be a process id between 1 and {MAX_PID}")
        try:
            return _guard().kill(int(pid), services().settings.kill_grace)
        except Refused as refused:
            abort(refused.status, message=str(refused))
