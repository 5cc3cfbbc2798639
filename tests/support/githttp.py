"""A real git smart-HTTP server for tests: `git http-backend` behind a threaded HTTP server on 127.0.0.1.

`delay` slows every response chunk down, so a clone can be caught (and its worker killed) mid-transfer.
`auth=(user, token)` makes it demand HTTP basic auth, as GitHub does for private repos.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.loopback import LoopbackServer


class GitHttpServer(LoopbackServer):
    def __init__(self, root: Path, delay: float = 0.0, chunk: int = 16384, auth: tuple[str, str] | None = None):
        super().__init__()
        self.root = root
        self.auth = "Basic " + base64.b64encode(":".join(auth).encode()).decode() if auth else None
        self.seen_auth: list[str] = []
        self.delay = delay
        self.chunk = chunk

    @property
    def base_url(self) -> str:
        return f"{self.url}/"

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        if self.auth:
            given = handler.headers.get("Authorization", "")
            self.seen_auth.append(given)
            if given != self.auth:
                handler.send_response(401)
                handler.send_header("WWW-Authenticate", 'Basic realm="git"')
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.auth:
            env["REMOTE_USER"] = "authenticated"  # http-backend allows pushes from authenticated users
        if handler.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
        if handler.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        try:
            handler.send_response(status)
            for key, value in headers:
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            for i in range(0, len(payload), self.chunk):
                handler.wfile.write(payload[i : i + self.chunk])
                handler.wfile.flush()
                if self.delay:
                    time.sleep(self.delay)
        except (BrokenPipeError, ConnectionResetError):
            pass
