"""Health, disk and memory."""

from __future__ import annotations

import shutil
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from redis.exceptions import RedisError

from domain import procman
from domain.inventory import disk_usage
from domain.memory_manager import report
from domain.opencode import Opencode, OpencodeUnavailable
from sidecar.schemas import DiskSchema, HealthSchema, MemorySchema
from sidecar.services import services
from sidecar.workers import live_workers

blp = Blueprint("system", __name__, url_prefix="/admin", description="Health and resources")


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="something is down; `problems` says what")
    def get(self) -> tuple[dict[str, Any], int]:
        """200 when Redis answers, a worker is alive and opencode is healthy; else 503 naming what is down, and
        what procman is restarting."""
        queue = services().jobs.queue
        stack = procman.services(services().settings.run_dir)
        problems = procman.problems(stack)
        workers: list[str] = []
        redis_ok = False
        try:
            redis_ok = bool(queue.connection.ping())
            workers = live_workers(queue)
        except RedisError as exc:
            problems.append(f"redis: {exc}")
        if redis_ok and not workers:
            problems.append(f"worker: no live worker on queue {queue.name}")
        if opencode_url := services().settings.opencode_url:
            try:
                Opencode(opencode_url, timeout=2).check()
            except OpencodeUnavailable as exc:
                problems.append(f"opencode: {exc}")
        body = {"status": "unavailable" if problems else "ok", "redis": redis_ok, "workers": workers, "services": stack}
        return {**body, "problems": problems}, 503 if problems else 200


@blp.route("/disk")
class Disk(MethodView):
    @blp.response(200, DiskSchema)
    def get(self) -> dict[str, Any]:
        """Volume totals and the bytes used by the repo cache and by worktrees."""
        layout = services().layout
        total, used, free = shutil.disk_usage(layout.root)
        return {
            "data_dir": str(layout.root),
            "total_bytes": total,
            "used_bytes": used,
            "free_bytes": free,
            "repos_bytes": disk_usage(layout.repos_dir),
            "worktrees_bytes": disk_usage(layout.worktrees_dir),
        }


@blp.route("/memory")
class Memory(MethodView):
    @blp.response(200, MemorySchema)
    def get(self) -> dict[str, Any]:
        """The memory limit, use and headroom; each service's PSS and restarts; the agent's commands."""
        return report(services().settings)
