"""What a chat can be started with: the models of the providers opencode has set up, and its primary agents; and
whether a model or agent asked for is one of them.

Asking opencode is costly: the instance asked loads every provider, 2 to 4.5 s and about 200 MB of opencode's memory
the first time (measured on this 2-core machine). What it offers changes only when the stack starts again (opencode's
config and the providers' keys in its environment are read then), so the answer is kept in Redis until then (stamped
with the start: bin/start writes opencode's config file each time), and the instance asked is disposed of at once.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from domain.config import Settings
from domain.layout import Layout
from domain.opencode import Opencode

CACHE_KEY = "mecodes:agent-options:"  # + opencode's URL
CACHE_TTL = 86400  # seconds; outside bin/start (nothing to stamp with) UNSTAMPED_TTL
UNSTAMPED_TTL = 600
ASK_TIMEOUT = 30  # seconds: a first ask loads every provider
FREE_TIER_KEY = "public"  # opencode's own provider without a key of the person's: its free models only
PRIMARY_MODES = {"primary", "all"}
SHOWN_IN_ERRORS = 12
NO_PROVIDER = "no model provider is set up: give opencode a key (OPENROUTER_API_KEY, say) and restart; see the README"


class InvalidChoice(ValueError):
    """A model or agent opencode does not offer; `field` names the request's field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def read_options(opencode: Opencode, directory: str) -> dict[str, Any]:
    """The models and primary agents opencode offers (hidden agents and sub-agents left out), with its defaults."""
    found = opencode.providers(directory)
    config = opencode.config(directory)
    providers = found.get("providers") or []
    models = [
        {
            "id": f"{provider['id']}/{model_id}",
            "name": model.get("name") or model_id,
            "provider": provider.get("name") or provider["id"],
            "images": bool(((model.get("capabilities") or {}).get("input") or {}).get("image")),
        }
        for provider in providers
        for model_id, model in sorted((provider.get("models") or {}).items())
    ]
    offered = {model["id"] for model in models}
    own = [p["id"] for p in providers if (p.get("options") or {}).get("apiKey") != FREE_TIER_KEY]
    defaults = [f"{p}/{m}" for p, m in (found.get("default") or {}).items()]
    preferred = [config.get("model"), *[d for d in defaults if d.split("/")[0] in own], *defaults]
    agents = [
        {"name": agent["name"], "description": agent.get("description") or ""}
        for agent in opencode.agents(directory)
        if agent.get("mode") in PRIMARY_MODES and not agent.get("hidden")
    ]
    names = [agent["name"] for agent in agents]
    default_agent = next((a for a in (config.get("default_agent"), "build") if a in names), names[0] if names else None)
    return {
        "models": models,
        "default_model": next((m for m in preferred if m in offered), models[0]["id"] if models else None),
        "agents": agents,
        "default_agent": default_agent,
        "providers_configured": bool(own),
    }


def agent_options(opencode: Opencode, redis: Redis, settings: Settings) -> dict[str, Any]:
    """read_options, kept in Redis until the stack starts again."""
    key = CACHE_KEY + settings.opencode_url
    stamp = _start_stamp(settings)
    if (kept := redis.get(key)) is not None and (entry := json.loads(kept))["stamp"] == stamp:
        return entry["options"]
    directory = Layout(settings.data_dir).tmp_dir  # opencode needs one; no chat's: a chat's stays its own
    asking = Opencode(opencode.base_url, timeout=ASK_TIMEOUT)
    try:
        options = read_options(asking, str(directory))
    finally:
        asking.dispose(str(directory))  # what that instance holds, given back at once
    redis.set(key, json.dumps({"stamp": stamp, "options": options}), ex=CACHE_TTL if stamp else UNSTAMPED_TTL)
    return options


def _start_stamp(settings: Settings) -> str:
    """When bin/start last wrote opencode's config (each start does); empty outside bin/start."""
    config = settings.run_dir / "opencode.json" if settings.run_dir else None
    return str(config.stat().st_mtime_ns) if config is not None and config.is_file() else ""


def check_choice(options: dict[str, Any], model: str | None, agent: str | None, images: bool = False) -> None:
    """Raise InvalidChoice unless `model` and `agent` (None: opencode's default) are offered, and, when a message
    carries images, unless its model takes them."""
    models = [m["id"] for m in options["models"]]
    if model is not None and model not in models:
        hint = f"choose one of {_some(models)}" if models else NO_PROVIDER
        raise InvalidChoice("model", f"{model} is not offered: {hint}")
    agents = [a["name"] for a in options["agents"]]
    if agent is not None and agent not in agents:
        raise InvalidChoice("agent", f"{agent} is not a primary agent here: choose one of {_some(agents)}")
    chosen = next((m for m in options["models"] if m["id"] == (model or options["default_model"])), None)
    if images and chosen is not None and not chosen["images"]:
        raise InvalidChoice("attachments", f"the model {chosen['id']} does not take images; choose one that does")


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_IN_ERRORS])
    more = f" … ({len(names)} in all: GET /admin/agent-options lists them)" if len(names) > SHOWN_IN_ERRORS else ""
    return shown + more
