"""Hostile input: every bad value gets a clear 4xx JSON error naming the field.

Never a 500, never a traceback, never a path outside the data root, never a git option passed through.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from domain.config import Settings, load_settings
from sidecar import create_app

# The file an `--upload-pack=touch ...` (or `core.sshCommand`) payload would create if it ever reached git.
PWNED = Path(tempfile.gettempdir()) / f"mecodes-pwned-{uuid.uuid4().hex[:8]}"
OK_BODY = {"repo": "octo/hello", "session_id": "ses_1"}

BAD_REPOS: list[Any] = [
    *["..", ".", "../x", "x/..", "x/.", "./x", "..x/y", "x/.y", "", "abc", "/abc", "abc/", "a//b", "a/b/c"],
    *["-x/y", "x/-y", ".x/y", "x-/y", "x--y/z", f"--upload-pack=touch {PWNED}", "x/--upload-pack=touch"],
    *["-c core.sshCommand=x/y", "x/-c core.sshCommand=touch", "o w/n", "o/n m", " o/n", "o/n "],
    *["o/n;id", "o/$(id)", "o/`id`", "o/n|id", "o/n&id", "o/n>f", "o/n'", 'o/n"', "o/n*"],
    *["o/n?x", "o/n#x", "o%2Fn/x", "o/n%2Fx", "o@h/n", "o:x/n", "o/n:x", "o/n\\x", "o/n~", "o/n^"],
    *["o\uff0fn", "\u043e/n", "o/n\u0430me", "o/n\u200b", "o\u2215n"],
    *["o/n\x00", "o/n\x01", "o/n\x7f", "o/n\n", "o\n/n", "o/n\r", "o/n\t"],
    *["a" * 40 + "/n", "o/" + "b" * 101, "o/n.git", "o/.git", "o/n.git/"],
    *[5, 1.5, True, ["o/n"], None, {"owner": "o", "name": "n"}],
]
BAD_SESSIONS: list[Any] = [
    *["-x", "--upload-pack=touch", "..", ".", ".a", "_a", "a/b", "/", "a/../b", "s" * 129, "", " ", "a b"],
    *["a;b", "$(id)", "a`b`", "a|b", "a&b", "a?b", "a#b", "a%2Fb", "a@b", "a:b", "a.b"],
    *["a__b", "ses__", "\uff41", "\u0430", "a\x00", "a\x1b", "a\n", 5, None, ["a"], {"a": 1}],
]
BAD_BRANCHES: list[Any] = [
    *["-x", "--upload-pack=touch", "..", "a..b", "/a", "a/", "a.lock", "a/b.lock/c", ".a", "a/.b", "a//b"],
    *["a.", "HEAD", "@{", "a@{1}", "@", "~", "a~1", "^", "a^", ":", "a:b", "a b", " ", "", "a\\b"],
    *["a*", "a?", "a[", "a\x00", "a\n", "\u0430", "a" * 201, 5, ["a"], {"a": 1}, True],
]
# Raw bodies: (data, content type, a name that must appear in `errors`).
BAD_BODIES: list[tuple[bytes, str, str]] = [
    (b"", "application/json", "repo"),
    (b"{}", "application/json", "repo"),
    (b"{repo: x", "application/json", "json"),
    (b"\xff\xfe{}", "application/json", "json"),
    (b"[]", "application/json", "json"),
    (b'[{"repo": "o/n"}]', "application/json", "json"),
    (b'"o/n"', "application/json", "json"),
    (b"null", "application/json", "json"),
    (b"42", "application/json", "json"),
]
# Bodies that are not JSON: (data, content type). Refused with 415 whatever they hold.
NOT_JSON: list[tuple[bytes, str | None]] = [
    (b'{"repo": "o/n", "session_id": "s"}', "text/plain"),
    (b"repo=o/n&session_id=s", "application/x-www-form-urlencoded"),
    (b'{"repo": "o/n", "session_id": "s"}', None),
]


def error_names(value: Any) -> set[str]:
    """Every key anywhere in an `errors` structure."""
    if isinstance(value, dict):
        return {str(k) for k in value} | {n for v in value.values() for n in error_names(v)}
    if isinstance(value, list):
        return {n for v in value for n in error_names(v)}
    return set()


def assert_refused(response: TestResponse, field: str | None, statuses: tuple[int, ...] = (400, 422)) -> None:
    """A 4xx JSON error without a traceback that, given `field`, names it in `errors`."""
    text = response.get_data(as_text=True)
    assert response.status_code in statuses, (response.status_code, text[:300])
    assert response.is_json, text[:300]
    assert "Traceback" not in text and 'File "' not in text, text[:300]
    body = response.get_json()
    assert isinstance(body, dict) and body.get("code") == response.status_code, body
    if field is not None:
        assert field in error_names(body.get("errors")), body


@pytest.mark.parametrize("repo", BAD_REPOS)
def test_clone_refuses_bad_repo(client: FlaskClient, repo: Any) -> None:
    assert_refused(client.post("/admin/repos/clone", json={"repo": repo}), "repo")


@pytest.mark.parametrize("repo", BAD_REPOS)
def test_worktree_refuses_bad_repo(client: FlaskClient, repo: Any) -> None:
    assert_refused(client.post("/admin/worktrees", json={**OK_BODY, "repo": repo}), "repo")


@pytest.mark.parametrize("session_id", BAD_SESSIONS)
def test_worktree_refuses_bad_session_id(client: FlaskClient, session_id: Any) -> None:
    assert_refused(client.post("/admin/worktrees", json={**OK_BODY, "session_id": session_id}), "session_id")


@pytest.mark.parametrize("branch", BAD_BRANCHES)
def test_worktree_refuses_bad_branch(client: FlaskClient, branch: Any) -> None:
    assert_refused(client.post("/admin/worktrees", json={**OK_BODY, "branch": branch}), "branch")


@pytest.mark.parametrize(("body", "field"), [({}, "repo"), ({"repo": "o/n", "extra": 1}, "extra")])
def test_clone_refuses_missing_and_unknown_fields(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    assert_refused(client.post("/admin/repos/clone", json=body), field)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"repo": "o/n"}, "session_id"), ({"session_id": "s"}, "repo"), ({**OK_BODY, "path": "/etc"}, "path")],
)
def test_worktree_refuses_missing_and_unknown_fields(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    assert_refused(client.post("/admin/worktrees", json=body), field)


@pytest.mark.parametrize("url", ["/admin/repos/clone", "/admin/worktrees"])
@pytest.mark.parametrize(("data", "content_type", "field"), BAD_BODIES)
def test_refuses_malformed_bodies(client: FlaskClient, url: str, data: bytes, content_type: str, field: str) -> None:
    assert_refused(client.post(url, data=data, content_type=content_type), field)


def _json_body_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation whose request body is JSON, from the app's own OpenAPI document (which
    needs neither Redis nor data): an endpoint added later is covered without touching this test."""
    with tempfile.TemporaryDirectory() as data:
        app = create_app(replace(load_settings(), data_dir=Path(data)))
        spec = app.test_client().get("/admin/openapi.json").get_json()
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


JSON_BODY_OPERATIONS = _json_body_operations()


def test_json_body_operations_are_found() -> None:
    known = {
        ("POST", "/admin/repos/clone"),
        ("POST", "/admin/worktrees"),
        ("POST", "/admin/chats"),
        ("POST", "/admin/gc"),
    }
    assert known <= set(JSON_BODY_OPERATIONS), JSON_BODY_OPERATIONS


@pytest.mark.parametrize(("method", "path"), JSON_BODY_OPERATIONS)
@pytest.mark.parametrize(("data", "content_type"), NOT_JSON)
def test_a_body_that_is_not_json_is_415(
    client: FlaskClient, method: str, path: str, data: bytes, content_type: str | None
) -> None:
    url = re.sub(r"\{[^}]+\}", "ses_1", path)
    response = client.open(url, method=method, data=data, content_type=content_type)
    assert_refused(response, "Content-Type", (415,))
    assert "application/json" in response.get_json()["message"]
    operation = client.get("/admin/openapi.json").get_json()["paths"][path][method.lower()]
    assert "415" in operation["responses"], "the 415 is documented"


def test_json_with_a_charset_and_empty_bodies_where_all_is_optional_pass(client: FlaskClient) -> None:
    charset = client.post(
        "/admin/repos/clone", data=b'{"repo": "-x/y"}', content_type="application/json; charset=utf-8"
    )
    assert_refused(charset, "repo", (422,))  # read as JSON: the field itself is judged
    push = client.post("/admin/chats/ses_nosuchchat/push")  # every field optional: no body asks for the defaults
    assert push.status_code == 404, push.get_json()
    gc = client.post("/admin/gc")  # `dry_run` is required: no body is not JSON
    assert_refused(gc, "Content-Type", (415,))


@pytest.mark.parametrize("url", ["/admin/repos/clone", "/admin/worktrees"])
def test_refuses_deeply_nested_json(client: FlaskClient, url: str) -> None:
    data = '{"repo": ' + "[" * 2000 + "]" * 2000 + "}"  # 4 KB, well under the body limit
    assert_refused(client.post(url, data=data, content_type="application/json"), "json")


@pytest.mark.parametrize("url", ["/admin/repos/clone", "/admin/worktrees"])
def test_refuses_body_over_64_kib(client: FlaskClient, url: str) -> None:
    data = json.dumps({**OK_BODY, "repo": "o/" + "n" * 70_000})
    assert_refused(client.post(url, data=data, content_type="application/json"), None, (413,))


# (url, field named in a 422; None: routing cannot match, 404 expected)
BAD_PATHS: list[tuple[str, str | None]] = [
    *[(f"/admin/repos/{p}", "repo") for p in ["../x", "x/..", "%2e%2e/x", "x/%2E%2E", ".x/y", "-x/y", "x/-y"]],
    *[(f"/admin/repos/{p}", "repo") for p in ["x/--upload-pack=touch", "x/n.git", "x/n%3Bid", "x/%24(id)"]],
    *[(f"/admin/repos/{p}", "repo") for p in ["%D0%BE/n", "o/%EF%BC%8F", "o/n%00", "o/n%0A", "o/n%20x"]],
    *[(f"/admin/repos/{p}", "repo") for p in ["a" * 40 + "/n", "o/" + "b" * 101, "a" * 5000 + "/n"]],
    *[(f"/admin/repos/{p}", None) for p in ["o%2Fx/n", "o/n%2F..%2F..", "../../x/y"]],
    *[(f"/admin/worktrees/{p}", "repo") for p in ["../n/s", "%2e%2e/n/s", "-o/n/s", "o/.n/s", "o/n.git/s"]],
    *[(f"/admin/worktrees/o/n/{s}", "session_id") for s in ["..", "%2e%2e", "-x", "--upload-pack=x", ".s"]],
    *[(f"/admin/worktrees/o/n/{s}", "session_id") for s in ["s" * 129, "%D1%95", "s%00", "s%0A", "a%3Bb"]],
    *[(f"/admin/worktrees/o/n/{s}", None) for s in ["a%2Fb", "", "..%2F..%2Fetc"]],
    *[(f"/admin/jobs/{j}", "job_id") for j in ["..", "%2e%2e", "-x", "j" * 101, "%D0%B0", "j%00", "rq:job:x"]],
    *[(f"/admin/jobs/{j}", None) for j in ["a%2Fb", "..%2F..%2Fx", "nosuchjob"]],
]


@pytest.mark.parametrize(("url", "field"), BAD_PATHS)
def test_refuses_bad_path_parameters(client: FlaskClient, url: str, field: str | None) -> None:
    method = client.get if url.startswith("/admin/jobs/") else client.delete
    assert_refused(method(url), field, (422,) if field else (404,))


@pytest.mark.parametrize("url", ["/admin/repos/o/n", "/admin/worktrees/o/n/s"])
@pytest.mark.parametrize("value", ["maybe", "2", "truee"])
def test_deletes_refuse_bad_force(client: FlaskClient, url: str, value: str) -> None:
    assert_refused(client.delete(f"{url}?force={value}"), "force", (422,))


@pytest.mark.parametrize("value", ["0", "-1", "501", "100000", "abc", "1.5", ""])
def test_job_list_refuses_bad_limit(client: FlaskClient, value: str) -> None:
    assert_refused(client.get(f"/admin/jobs?limit={value}"), "limit", (422,))


def test_nothing_escaped_the_data_root(client: FlaskClient, settings: Settings) -> None:
    """Runs last: after every hostile request above, no payload reached git or the filesystem."""
    assert not PWNED.exists()
    root = settings.data_dir
    for folder in (root / "repos", root / "worktrees", root / "tmp"):
        bad = [p.name for p in folder.iterdir() if ".." in p.name or p.name.startswith(("-", "."))]
        assert not bad, f"{folder}: {bad}"
    # A slug (`owner__name`) folder directly in the data root or beside it would be a traversal's leftover.
    beside = [p for p in [*root.iterdir(), *root.parent.iterdir()] if "__" in p.name and not p.name.startswith("test")]
    assert not beside, beside
    jobs = client.get("/admin/jobs?limit=500").get_json()["jobs"]
    assert not [j for j in jobs if "upload-pack" in (j["description"] or "") or PWNED.name in (j["description"] or "")]
