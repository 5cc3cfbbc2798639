"""The user's GitHub repos, for the repo picker: listed through the token, cached in Redis for a while."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.error_handler import ErrorSchema

from domain.github import GitHub, GitHubError
from domain.names import InvalidName, parse_repo
from sidecar.schemas import GitHubRepoListSchema, GitHubReposQuery
from sidecar.services import services

blp = Blueprint("github", __name__, url_prefix="/admin/github", description="The user's GitHub repos")
PAGE_SIZE = 30
FIELDS = ("full_name", "private", "default_branch", "pushed_at")
RATE_LIMITED = "mecodes:github:rate-limited-until"


def _all_repos(refresh: bool) -> list[dict[str, Any]]:
    svc = services()
    settings, redis = svc.settings, svc.jobs.redis
    # Keyed by a digest of the API and the token (never the token): another token sees another list.
    identity = hashlib.sha256(f"{settings.github_api_url}\n{settings.github_token}".encode()).hexdigest()[:16]
    key = f"mecodes:github:repos:{identity}"
    if not refresh and (cached := redis.get(key)):
        return json.loads(cached)
    rate_limited = f"{RATE_LIMITED}:{identity}"
    if reset := redis.get(rate_limited):  # used up: answer from here until it resets, don't ask again
        reset_at = datetime.fromisoformat(reset.decode())
        raise GitHubError(503, f"GitHub's rate limit is used up until {reset_at}", reset_at)
    try:
        found = GitHub(settings.github_api_url, settings.github_token).repos()
    except GitHubError as error:
        if error.reset_at and (seconds := int((error.reset_at - datetime.now(UTC)).total_seconds())) > 0:
            redis.set(rate_limited, error.reset_at.isoformat(), ex=seconds)
        raise
    repos = [{f: r.get(f) for f in FIELDS} for r in found]
    redis.set(key, json.dumps(repos), ex=settings.github_cache_ttl)
    return repos


def _is_cached(full_name: str) -> bool:
    try:
        return services().layout.is_cached(parse_repo(full_name))
    except InvalidName:
        return False


@blp.route("/repos")
class Repos(MethodView):
    @blp.arguments(GitHubReposQuery, location="query")
    @blp.response(200, GitHubRepoListSchema)
    @blp.alt_response(401, schema=ErrorSchema, description="GitHub refused the token")
    @blp.alt_response(503, schema=ErrorSchema, description="no token, GitHub unreachable, or rate limit used up")
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Repos the token can see, most recently pushed first, `q` filtering by name; cached for
        MECODES_GITHUB_CACHE_TTL seconds unless refresh=true."""
        needle = query["q"].lower()
        repos = [r for r in _all_repos(query["refresh"]) if needle in (r["full_name"] or "").lower()]
        start = (query["page"] - 1) * PAGE_SIZE
        page = [{**r, "cached": _is_cached(r["full_name"] or "")} for r in repos[start : start + PAGE_SIZE]]
        return {"repos": page, "page": query["page"], "pages": math.ceil(len(repos) / PAGE_SIZE), "total": len(repos)}
