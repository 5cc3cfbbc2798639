"""`python -m gate HOST PORT`: the login gate.

Caddy asks `GET /auth/basic` before every request but the health check, passing the client's `Authorization` and
`Fly-Client-IP` headers and `X-Mecodes-Peer`, the address Caddy saw (set by Caddy, so no client can forge it). A
200 lets the request through; any other answer is what the client gets. Most answers are decided in memory on the
event loop (domain/login_gate.py's `quick`); a guess to be hashed goes to a thread, and at most one bcrypt runs at a
time. Refusals are added to Redis once a second, for the Resources screen.

Its own small process rather than a route of the sidecar: there, each check cost 2-3 ms of CPU in gunicorn and Flask
and shared the API's four threads, so 20 connections flooding it with wrong passwords took the polled job from p50
10 ms to 145 ms (bench/bench_login.py; the README's "Logins" has the figures of this process).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

from redis.exceptions import RedisError

from domain.client_address import client_address
from domain.config import Settings, load_settings
from domain.login_gate import LoginGate, Verdict, parse_basic
from domain.login_limits import LoginLimits
from domain.password import PasswordCheck
from domain.redis_client import connect
from gate.http import Request, Response, json_response, serve

log = logging.getLogger("gate")
PATH = "/auth/basic"
REALM = 'Basic realm="mecodes", charset="UTF-8"'
FLUSH_SECONDS = 1.0


def answer(verdict: Verdict) -> Response:
    if verdict.status == 200:
        return Response(200)
    headers = {"WWW-Authenticate": REALM} if verdict.status == 401 else {}
    if verdict.retry_after is not None:
        headers["Retry-After"] = str(verdict.retry_after)
    return json_response(verdict.status, verdict.message, headers)


async def run(gate: LoginGate, settings: Settings, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gate")

    async def handle(request: Request) -> Response:
        if request.method != "GET" or request.path != PATH:
            return json_response(404, f"the gate answers GET {PATH} only")
        peer = request.headers.get("x-mecodes-peer") or request.peer
        client = client_address(peer, request.headers.get("fly-client-ip"), settings.trusted_proxies)
        credentials = parse_basic(request.headers.get("authorization"))
        verdict = gate.quick(credentials, client) or await loop.run_in_executor(pool, gate.check, credentials, client)
        return answer(verdict)

    async def flush_refused() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if counts := gate.take_refused():
                try:
                    await loop.run_in_executor(pool, gate.limits.add_refused, counts)
                except RedisError as exc:
                    log.warning("could not count %d refused requests: %s", sum(counts.values()), exc)

    flusher = asyncio.create_task(flush_refused())
    try:
        await serve(host, port, handle)
    finally:
        flusher.cancel()


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit("usage: python -m gate HOST PORT")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gate %(levelname)s %(message)s")
    settings = load_settings()
    gate = LoginGate(PasswordCheck(settings.auth_user, settings.auth_hash), LoginLimits(connect(settings), settings))
    try:
        gate.load_bans()
    except RedisError as exc:
        log.warning("bans still running are not known (redis: %s); they start again from the next failures", exc)
    asyncio.run(run(gate, settings, argv[1], int(argv[2])))


if __name__ == "__main__":
    main(sys.argv)
