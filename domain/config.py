"""Settings read from environment variables, shared by the API and the worker.

Every variable is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
# Images sent with a message, in MB (decoded). Their base64 (a third more) must fit the 20 MB Caddy lets through.
ATTACHMENTS_MAX_MB = 14
T = TypeVar("T", int, float)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _number(name: str, default: T, kind: Callable[[str], T], minimum: T | None, maximum: T | None = None) -> T:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise SystemExit(f"{name} must be at most {maximum}, got {raw!r}")
    return value


def _int(name: str, default: int, minimum: int | None = 0, maximum: int | None = None) -> int:
    return _number(name, default, int, minimum, maximum)


def _float(name: str, default: float, minimum: float | None = 0) -> float:
    return _number(name, default, float, minimum)


def _switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in {"0", "1", "true", "false", "on", "off", "yes", "no"}:
        raise SystemExit(f"{name} must be on or off (1/0, true/false, yes/no), got {raw!r}")
    return raw in {"1", "true", "on", "yes"}


def _networks(name: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR ranges (`10.0.0.0/8, ::1`); empty: none."""
    raw = os.environ.get(name, "")
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SystemExit(f"{name} must be addresses or CIDR ranges separated by commas, got {raw!r} ({exc})") from None


def _urls(name: str) -> tuple[str, ...]:
    """URLs separated by spaces, or by commas where the next URL begins (a comma inside a URL's query stays)."""
    return tuple(part for part in re.split(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)", os.environ.get(name, "")) if part)


def _base_url(name: str) -> str:
    """An absolute http(s) address, without a trailing slash; empty: none."""
    raw = os.environ.get(name, "").strip().rstrip("/")
    if not raw:
        return raw
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise SystemExit(f"{name} must be an address like https://host[:port][/path], got {raw!r}")
    return raw


# RFC 8292's contact, as the push services (and pywebpush's py_vapid) take it: a mailto: address or an https URL.
_CONTACT = re.compile(r"^(mailto:[^@\s/]+@(localhost|[\w%-]+(\.[\w%-]+)+)|https://[\w-]+(\.[\w-]+)+(:\d+)?(/\S*)?)$")


def _contact(name: str, default: str) -> str:
    raw = os.environ.get(name, "").strip() or default
    if not _CONTACT.match(raw):
        raise SystemExit(f"{name} must be mailto:you@example.com or an https:// address, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    redis_url: str
    git_base_url: str
    github_token: str
    github_user: str
    opencode_url: str
    queue_name: str
    clone_timeout: int
    git_query_timeout: int
    fetch_max_age: int
    lock_ttl: int
    job_result_ttl: int
    job_failure_ttl: int
    gc_interval: int
    gc_max_idle_days: float
    gc_repo_idle_days: float
    agent_release_interval: int
    work_state_max_age: int
    auto_continue: bool
    agent_idle_minutes: float
    stack_pid: int | None
    kill_grace: float
    github_api_url: str
    github_cache_ttl: int
    run_dir: Path | None
    memory_limit_mb: int
    chat_memory_mb: int
    chat_memory_wait: int
    agent_restart_mb: int
    agent_restart_quiet: int
    auth_user: str
    auth_hash: str
    login_failures: int
    login_window: int
    login_ban: int
    login_ban_max: int
    trusted_proxies: tuple[Network, ...]
    attachments_max_mb: int
    notify_dir: Path
    notify_urls: tuple[str, ...]
    public_url: str
    push_contact: str
    push_loopback: bool

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in output, logs or job data."""
        return tuple(s for s in (self.github_token, *self.notify_urls) if s)


def load_settings() -> Settings:
    base_url = os.environ.get("MECODES_GIT_BASE_URL", "https://github.com/")
    if not base_url.endswith("/"):
        base_url += "/"
    data_dir = Path(os.environ.get("MECODES_DATA_DIR") or REPO_ROOT / "data" / "projects").resolve()
    github_user = os.environ.get("GITHUB_USER", "")
    return Settings(
        data_dir=data_dir,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6380/0"),
        git_base_url=base_url,
        github_token=os.environ.get("GITHUB_TOKEN", ""),
        github_user=github_user,
        opencode_url=os.environ.get("OPENCODE_URL", "http://127.0.0.1:4096").rstrip("/"),
        queue_name=os.environ.get("MECODES_QUEUE", "mecodes"),
        clone_timeout=_int("MECODES_CLONE_TIMEOUT", 1800),
        git_query_timeout=_int("MECODES_GIT_QUERY_TIMEOUT", 20),
        fetch_max_age=_int("MECODES_FETCH_MAX_AGE", 60),
        lock_ttl=_int("MECODES_LOCK_TTL", 30),
        job_result_ttl=_int("MECODES_JOB_RESULT_TTL", 86400),
        job_failure_ttl=_int("MECODES_JOB_FAILURE_TTL", 7 * 86400),
        gc_interval=_int("MECODES_GC_INTERVAL", 6 * 3600),
        gc_max_idle_days=_float("MECODES_GC_MAX_IDLE_DAYS", 7),
        gc_repo_idle_days=_float("MECODES_GC_REPO_IDLE_DAYS", 30),
        agent_release_interval=_int("MECODES_AGENT_RELEASE_INTERVAL", 60),
        work_state_max_age=_int("MECODES_WORK_STATE_MAX_AGE", 300),
        auto_continue=_switch("MECODES_AUTO_CONTINUE", False),
        agent_idle_minutes=_float("MECODES_AGENT_IDLE_MINUTES", 15),
        stack_pid=_int("MECODES_STACK_PID", 0) or None,
        kill_grace=_float("MECODES_KILL_GRACE", 5),
        github_api_url=os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
        github_cache_ttl=_int("MECODES_GITHUB_CACHE_TTL", 300),
        run_dir=Path(os.environ["MECODES_RUN_DIR"]) if os.environ.get("MECODES_RUN_DIR") else None,
        memory_limit_mb=_int("MECODES_MEMORY_LIMIT_MB", 0),
        chat_memory_mb=_int("MECODES_CHAT_MEMORY_MB", 300),
        chat_memory_wait=_int("MECODES_CHAT_MEMORY_WAIT", 1800),
        agent_restart_mb=_int("MECODES_AGENT_RESTART_MB", 400),
        agent_restart_quiet=_int("MECODES_AGENT_RESTART_QUIET", 120),
        auth_user=os.environ.get("CADDY_AUTH_USER", ""),
        auth_hash=os.environ.get("CADDY_AUTH_HASH", ""),
        login_failures=_int("MECODES_LOGIN_FAILURES", 5, minimum=1),
        login_window=_int("MECODES_LOGIN_WINDOW", 60, minimum=1),
        login_ban=_int("MECODES_LOGIN_BAN", 60, minimum=1),
        login_ban_max=_int("MECODES_LOGIN_BAN_MAX", 3600, minimum=1),
        trusted_proxies=_networks("MECODES_TRUSTED_PROXY"),
        attachments_max_mb=_int("MECODES_ATTACHMENTS_MAX_MB", 8, minimum=1, maximum=ATTACHMENTS_MAX_MB),
        notify_dir=Path(os.environ.get("MECODES_NOTIFY_DIR") or data_dir.parent / "notifications").resolve(),
        notify_urls=_urls("MECODES_NOTIFY_URLS"),
        public_url=_base_url("MECODES_PUBLIC_URL"),
        push_contact=_contact("MECODES_PUSH_CONTACT", f"mailto:{github_user or 'mecodes'}@users.noreply.github.com"),
        push_loopback=_switch("MECODES_PUSH_LOOPBACK", False),
    )
