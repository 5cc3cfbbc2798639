"""What the agents cost over the last days (domain.costs)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.error_handler import ErrorSchema

from domain.costs import Ledger
from domain.opencode import Opencode
from sidecar.schemas import CostsSchema
from sidecar.services import services

blp = Blueprint("costs", __name__, url_prefix="/admin", description="What the agents cost")


@blp.route("/costs")
class Costs(MethodView):
    @blp.response(200, CostsSchema)
    @blp.alt_response(503, schema=ErrorSchema, description="opencode (or Redis) is unavailable")
    def get(self) -> dict[str, Any]:
        """Tokens and cost of the last 30 days (UTC, today included), deleted chats and sub-agents' sessions
        included, at the prices in opencode's model config."""
        svc = services()
        ledger = Ledger(svc.jobs.redis)
        ledger.observe(Opencode(svc.settings.opencode_url).sessions(roots=False))
        return ledger.total()
