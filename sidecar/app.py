"""The Flask application: configuration, shared services, error handling, docs assets, blueprints."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Flask, jsonify, send_from_directory, url_for
from flask_smorest import Api
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from domain.config import Settings, load_settings
from domain.github import GitHubError
from domain.opencode import OpencodeError, OpencodeUnavailable
from sidecar.api.attachments import allow_image_bodies
from sidecar.api.errors import UnsupportedMediaTypeDoc, refuse_unless_json
from sidecar.jobqueue import JobInFlight
from sidecar.services import Services

SWAGGER_ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
MAX_BODY_BYTES = 64 * 1024


def build_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        API_TITLE="mecodes sidecar",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/admin",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/admin/docs/assets/",
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    app.json.sort_keys = False  # keep the schemas' field order
    app.extensions["mecodes"] = Services.create(settings)
    api = Api(app, spec_kwargs={"extra_plugins": [UnsupportedMediaTypeDoc()]})
    app.before_request(allow_image_bodies)  # first: reading the body for the JSON check applies the size limit
    app.before_request(refuse_unless_json)

    from sidecar.api import (
        agent_options,
        chat_changes,
        chat_turns,
        chats,
        costs,
        gc,
        github,
        jobs,
        logins,
        notifications,
        processes,
        repos,
        system,
        worktrees,
    )

    blueprints = (
        chats.blp,
        chat_turns.blp,
        chat_changes.blp,
        agent_options.blp,
        github.blp,
        repos.blp,
        worktrees.blp,
        jobs.blp,
        gc.blp,
        processes.blp,
        system.blp,
        logins.blp,
        costs.blp,
        notifications.blp,
    )
    for blueprint in blueprints:
        api.register_blueprint(blueprint)

    @app.get("/admin/docs/assets/<path:filename>")
    def swagger_assets(filename: str):
        return send_from_directory(SWAGGER_ASSETS, filename, max_age=86400)

    @app.errorhandler(RedisError)
    def redis_down(exc: RedisError):
        app.logger.warning("redis unavailable: %s", exc)
        body = {"code": 503, "status": "Service Unavailable", "message": "redis is unavailable; retry shortly"}
        return jsonify(body), 503

    @app.errorhandler(JobInFlight)
    def job_in_flight(exc: JobInFlight):
        job = {"id": exc.job.id, "url": url_for("jobs.Job", job_id=exc.job.id)}
        return jsonify({"code": 409, "status": "Conflict", "message": str(exc), "errors": {"job": job}}), 409

    @app.errorhandler(OpencodeUnavailable)
    def opencode_down(exc: OpencodeUnavailable):
        return jsonify({"code": 503, "status": "Service Unavailable", "message": str(exc)}), 503

    @app.errorhandler(OpencodeError)
    def opencode_refused(exc: OpencodeError):
        return jsonify({"code": 502, "status": "Bad Gateway", "message": str(exc)}), 502

    @app.errorhandler(GitHubError)
    def github_refused(exc: GitHubError):
        body = {"code": exc.status, "message": str(exc)}
        if exc.reset_at:
            body["reset_at"] = exc.reset_at.isoformat()
        return jsonify(body), exc.status

    @app.errorhandler(RecursionError)
    def too_deep(exc: RecursionError):
        body = {"code": 400, "status": "Bad Request", "errors": {"json": ["JSON nested too deeply."]}}
        return jsonify(body), 400

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return exc
        app.logger.exception("unhandled error")
        return jsonify({"code": 500, "status": "Internal Server Error", "message": "internal error"}), 500

    return app
