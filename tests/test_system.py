"""Health, disk, the OpenAPI document and docs page, and the real gunicorn entry point."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from domain.config import Settings
from sidecar import create_app
from tests.conftest import free_port, start_sidecar


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
    proc, url = start_sidecar(tmp_path / "gunicorn.log")
    try:
        with urllib.request.urlopen(f"{url}/admin/health", timeout=5) as response:
            assert json.load(response)["status"] == "ok"
        request = urllib.request.Request(
            f"{url}/admin/repos/clone",
            data=b'{"repo": "../x"}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 422 and "repo" in json.load(refused.value)["errors"]["json"]
    finally:
        proc.terminate()
        proc.wait(10)
