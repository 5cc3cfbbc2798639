"""What a chat can be started with (models, primary agents), and refusing a choice opencode does not offer."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.error_handler import ErrorSchema

from domain.agent_options import InvalidChoice, agent_options, check_choice
from domain.attachments import max_bytes
from domain.opencode import Opencode
from sidecar.api.errors import invalid
from sidecar.schemas import AgentOptionsSchema
from sidecar.services import services

blp = Blueprint("agent_options", __name__, url_prefix="/admin", description="What a chat can be started with")


def options(client: Opencode) -> dict[str, Any]:
    svc = services()
    return agent_options(client, svc.jobs.redis, svc.settings)


def refuse_unless_offered(client: Opencode, model: str | None, agent: str | None, images: bool) -> None:
    """422 naming the field when opencode offers no such model or agent, or the model takes no images; opencode is
    asked only when there is something to check."""
    if model is None and agent is None and not images:
        return
    try:
        check_choice(options(client), model, agent, images)
    except InvalidChoice as refused:
        invalid("json", refused.field, str(refused))


@blp.route("/agent-options")
class AgentOptions(MethodView):
    @blp.response(200, AgentOptionsSchema)
    @blp.alt_response(503, schema=ErrorSchema, description="opencode is unavailable")
    def get(self) -> dict[str, Any]:
        """The models of the providers opencode has set up (`provider/model`), its primary agents, the defaults, and
        whether a provider of the person's own is set up. Asked of opencode once per start of the stack."""
        client = Opencode(services().settings.opencode_url)
        return {**options(client), "attachments_max_bytes": max_bytes(services().settings)}
