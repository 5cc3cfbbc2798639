"""Just enough HTTP/1.1 for Caddy's `forward_auth`: GET requests without a body, over keep-alive connections.

Caddy is the only client (the gate listens on 127.0.0.1), so anything else (a body, a malformed head, a head over
64 KiB) closes the connection with a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query (Caddy's forward_auth keeps the client's)
    headers: dict[str, str]  # names in lower case; a repeated one keeps its last value
    peer: str  # the address the connection came from


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def json_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"code": status, "status": REASONS[status], "message": message}
    return Response(status, json.dumps(body).encode() + b"\n", {"Content-Type": "application/json", **(headers or {})})


BAD_REQUEST = json_response(400, "malformed request: the gate takes HTTP/1.1 requests without a body")


def parse_head(head: bytes, peer: str) -> Request | None:
    """The request in a head (up to, not including, its blank line); None when it is not HTTP/1.x."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        headers[name.strip().lower()] = value.strip()
    if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
        return None
    return Request(parts[0], parts[1].partition("?")[0], headers, peer)


def encode(response: Response, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}", f"Content-Length: {len(response.body)}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + response.body


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler) -> None:
    peer = str((writer.get_extra_info("peername") or ("",))[0])
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request = parse_head(head[:-4], peer)
            response = await handle(request) if request else BAD_REQUEST
            keep_alive = request is not None and request.headers.get("connection", "").lower() != "close"
            writer.write(encode(response, keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return  # the connection ended, or its head was too long
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(host: str, port: int, handle: Handler) -> None:
    """Answer every connection with `handle`, until cancelled."""
    server = await asyncio.start_server(lambda r, w: serve_connection(r, w, handle), host, port, limit=MAX_HEAD)
    async with server:
        await server.serve_forever()
