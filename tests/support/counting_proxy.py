"""A pass-through HTTP proxy on 127.0.0.1 that notes every request it passes on: what a test puts between the stack
and the real opencode to see which calls a read makes."""

from __future__ import annotations

import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer


class CountingProxy(LoopbackServer):
    """`with CountingProxy(target) as proxy:`; `proxy.asked` lists (method, path, directory) in order."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target.rstrip("/")
        self.asked: list[tuple[str, str, str | None]] = []

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        self.asked.append((handler.command, url.path, parse_qs(url.query).get("directory", [None])[0]))
        length = int(handler.headers.get("Content-Length") or 0)
        request = urllib.request.Request(
            self.target + handler.path,
            data=handler.rfile.read(length) if length else None,
            method=handler.command,
            headers={"Content-Type": handler.headers.get("Content-Type") or "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)
