"""A small GitHub REST client: the repos the token can see, and pull requests. Rate limits are respected:
when GitHub says none are left, we stop and say when they reset instead of asking again."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

_NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')
MAX_PAGES = 50  # 5,000 repos


class GitHubError(RuntimeError):
    """GitHub could not be used; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, reset_at: datetime | None = None):
        super().__init__(message)
        self.status = status
        self.reset_at = reset_at


class GitHub:
    def __init__(self, api_url: str, token: str, timeout: float = 15):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, url: str, body: Any = None) -> tuple[Any, dict[str, str]]:
        if not self.token:
            raise GitHubError(503, "GITHUB_TOKEN is not set, so GitHub cannot be asked")
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "mecodes",
        }
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - API URL
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null"), dict(response.headers)
        except urllib.error.HTTPError as error:
            raise _refusal(error) from None
        except (urllib.error.URLError, OSError) as error:
            raise GitHubError(503, f"GitHub did not answer at {self.api_url} ({error})") from None

    def repos(self) -> list[dict[str, Any]]:
        """Every repo the token can see (owned, collaborator, organisation), most recently pushed first."""
        query = urllib.parse.urlencode(
            {"affiliation": "owner,collaborator,organization_member", "sort": "pushed", "per_page": 100}
        )
        url: str | None = f"{self.api_url}/user/repos?{query}"
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            page, headers = self._request("GET", url)
            found += page
            match = _NEXT_LINK.search(headers.get("Link", ""))
            url = match.group(1) if match else None
        return sorted(found, key=lambda r: r.get("pushed_at") or "", reverse=True)

    def pull_request(
        self, owner: str, name: str, head: str, base: str, title: str, body: str, draft: bool
    ) -> tuple[dict[str, Any], bool]:
        """Open a pull request, or find the open one for `head`. Returns (pull request, created)."""
        repo_url = f"{self.api_url}/repos/{owner}/{name}"
        try:
            pull, _ = self._request(
                "POST", f"{repo_url}/pulls", {"title": title, "head": head, "base": base, "body": body, "draft": draft}
            )
            return pull, True
        except GitHubError as error:
            if error.status != 422:
                raise
            query = urllib.parse.urlencode({"head": f"{owner}:{head}", "state": "open"})
            existing, _ = self._request("GET", f"{repo_url}/pulls?{query}")
            if not existing:
                raise
            return existing[0], False


def _refusal(error: urllib.error.HTTPError) -> GitHubError:
    try:
        message = json.loads(error.read() or b"{}").get("message", "")
    except ValueError:
        message = ""
    headers = error.headers
    if error.code in {403, 429} and (headers.get("X-RateLimit-Remaining") == "0" or headers.get("Retry-After")):
        reset = headers.get("X-RateLimit-Reset")
        reset_at = datetime.fromtimestamp(int(reset), UTC) if reset and reset.isdigit() else None
        return GitHubError(503, f"GitHub's rate limit is used up until {reset_at or 'later'}", reset_at)
    if error.code == 401:
        return GitHubError(401, f"GitHub refused the token: {message or 'bad credentials'}")
    return GitHubError(error.code if error.code in {403, 404, 422} else 502, f"GitHub answered {error.code}: {message}")
