"""GET /admin/logins: failed logins and bans of the last 24 hours."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from sidecar.schemas import LoginReportSchema
from sidecar.services import services

blp = Blueprint("logins", __name__, url_prefix="/admin/logins", description="Failed logins and bans")


@blp.route("")
class Logins(MethodView):
    @blp.response(200, LoginReportSchema)
    def get(self) -> dict[str, Any]:
        """The last 24 hours by client address, most recent first: wrong passwords, bans, requests refused while
        banned, and when a running ban ends."""
        return services().logins.report()
