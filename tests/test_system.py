"""Health, disk, the OpenAPI document and docs page, and the real gunicorn entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

from flask.testing import FlaskClient

from sidecar import create_app
from sidecar.config import Settings
from tests.conftest import ROOT, free_port, wait_until


def test_health_ok_with_redis_and_worker(client: FlaskClient) -> None:
    response = client.get("/admin/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["redis"] is True and body["workers"] and body["problems"] == []


def test_health_names_a_missing_worker(settings: Settings) -> None:
    lonely = create_app(replace(settings, queue_name="nobody-serves-this")).test_client()
    response = lonely.get("/admin/health")
    assert response.status_code == 503
    assert response.get_json()["problems"] == ["worker: no live worker on queue nobody-serves-this"]


def test_redis_down_gives_503_json(settings: Settings) -> None:
    down = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")).test_client()
    health = down.get("/admin/health")
    assert health.status_code == 503 and health.get_json()["problems"][0].startswith("redis:")
    clone = down.post("/admin/repos/clone", json={"repo": "a/b"})
    assert clone.status_code == 503 and "redis" in clone.get_json()["message"]


def test_disk(client: FlaskClient, settings: Settings) -> None:
    body = client.get("/admin/disk").get_json()
    assert body["data_dir"] == str(settings.data_dir)
    assert body["total_bytes"] >= body["used_bytes"] > 0 and body["free_bytes"] > 0
    assert body["repos_bytes"] >= 0 and body["worktrees_bytes"] >= 0


def test_openapi_and_offline_docs(client: FlaskClient) -> None:
    spec = client.get("/admin/openapi.json").get_json()
    paths = set(spec["paths"])
    assert {
        "/admin/repos/clone",
        "/admin/repos",
        "/admin/repos/{owner}/{name}",
        "/admin/worktrees",
        "/admin/worktrees/{owner}/{name}/{session_id}",
        "/admin/jobs",
        "/admin/jobs/{job_id}",
        "/admin/disk",
        "/admin/health",
    } <= paths
    assert "202" in spec["paths"]["/admin/repos/clone"]["post"]["responses"]
    page = client.get("/admin/docs").get_data(as_text=True)
    assert "/admin/docs/assets/swagger-ui-bundle.js" in page and "https://" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert client.get(f"/admin/docs/assets/{asset}").status_code == 200


def test_gunicorn_serves_the_app(stack_env: dict[str, str], worker, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--no-control-socket",
            "sidecar:create_app()",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:

        def health() -> dict | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/health", timeout=2) as r:
                    return json.load(r)
            except (urllib.error.URLError, ConnectionError):
                return None

        assert wait_until(health, 20, "gunicorn")["status"] == "ok"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/admin/repos/clone",
            data=b'{"repo": "../x"}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 422 and "repo" in json.load(exc)["errors"]["json"]
        else:
            raise AssertionError("a bad repo name was accepted")
    finally:
        proc.terminate()
        proc.wait(10)
