"""The one way every process of the stack connects to its Redis."""

from __future__ import annotations

from redis import Redis

from domain.config import Settings


def connect(settings: Settings, socket_timeout: float | None = 10) -> Redis:
    return Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=socket_timeout, health_check_interval=30
    )
