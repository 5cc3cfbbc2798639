"""A local stand-in for the GitHub REST endpoints mecodes uses, on 127.0.0.1: `GET /user/repos` (paginated
with `Link` headers, with rate-limit headers), `POST /repos/{o}/{n}/pulls` and `GET /repos/{o}/{n}/pulls`."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import LoopbackServer, reply_json


class FakeGitHub(LoopbackServer):
    def __init__(self, token: str, repos: list[dict[str, Any]]):
        super().__init__()
        self.token = token
        self.repos = repos
        self.pulls: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.rate_limited = False

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        self.requests.append(f"{handler.command} {url.path}")
        reset = str(int(time.time()) + 3600)
        if self.rate_limited:
            limits = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            return reply_json(handler, 403, {"message": "API rate limit exceeded"}, limits)
        limits = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999", "X-RateLimit-Reset": reset}
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return reply_json(handler, 401, {"message": "Bad credentials"}, limits)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        if url.path == "/user/repos":
            per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
            chunk = self.repos[(page - 1) * per_page : page * per_page]
            if page * per_page < len(self.repos):
                next_query = "&".join(f"{k}={v}" for k, v in {**query, "page": page + 1}.items())
                limits["Link"] = f'<{self.url}/user/repos?{next_query}>; rel="next"'
            return reply_json(handler, 200, chunk, limits)
        parts = url.path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
            full_name = f"{parts[1]}/{parts[2]}"
            if handler.command == "GET":
                head = query.get("head", "")
                mine = [p for p in self.pulls if p["repo"] == full_name and f"{parts[1]}:{p['head']}" == head]
                return reply_json(handler, 200, mine, limits)
            if any(p["repo"] == full_name and p["head"] == body["head"] for p in self.pulls):
                return reply_json(handler, 422, {"message": "A pull request already exists"}, limits)
            number = len(self.pulls) + 1
            pull = {
                **body,
                "repo": full_name,
                "number": number,
                "html_url": f"https://github.example/{full_name}/pull/{number}",
            }
            self.pulls.append(pull)
            return reply_json(handler, 201, pull, limits)
        return reply_json(handler, 404, {"message": "Not Found"}, limits)
