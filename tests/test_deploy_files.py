"""The deployment files, checked without Docker or Fly: lint, parse, and compare with the local stack."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([BIN / "hadolint", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_like_the_local_stack() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=python:3.11-slim-bookworm" in dockerfile  # Fly's base; scripts/test-image may name another
    build, final = dockerfile.split("FROM ${BASE} AS build\n")[1].split("FROM ${BASE}\n")
    assert "RUN scripts/setup requirements.txt" in build  # the same script scripts/dev runs
    assert "scripts/setup requirements.txt" in (ROOT / "scripts/dev").read_text()
    assert "scripts/install-system --runtime" in final  # only what runs: no node, npm or venv tools
    assert 'CMD ["bin/start"]' in final and "MECODES_RUN_AS=mecodes" in final
    ignored = (ROOT / ".dockerignore").read_text().split()
    for line in re.findall(r"^COPY (?!--from=)(.+) \S+$", dockerfile, flags=re.M):
        for source in line.split():
            assert f"!{source}" in ignored, f"{source} is copied but excluded from the build context"
            assert (ROOT / source).exists()
    for package in re.findall(r"python -m (\w+)", (ROOT / "Procfile").read_text()):  # every service's code is in it
        assert f"COPY {package}/ {package}/" in final, package


def test_fly_toml() -> None:
    fly = tomllib.loads((ROOT / "fly.toml").read_text())
    assert fly["vm"][0]["size"] == "shared-cpu-2x" and fly["vm"][0]["memory"] == "1gb"
    assert fly["swap_size_mb"] == 512
    assert fly["mounts"]["destination"] == "/vol"
    service = fly["http_service"]
    assert service["auto_stop_machines"] == "off" and service["internal_port"] == 8080 and service["force_https"]
    assert [c["path"] for c in service["checks"]] == ["/admin/health"]
    env = fly["env"]
    assert env["GITHUB_USER"] and env["MECODES_DATA_DIR"] == "/vol/projects"
    assert env["MECODES_OPENCODE_HOME"].startswith("/vol/")
    assert fly["kill_timeout"] >= int(env["MECODES_STOP_GRACE"]) + 15  # grace, cold stop, the rest
    assert [ipaddress.ip_network(n) for n in env["MECODES_TRUSTED_PROXY"].split(",")]  # Fly-Client-IP believed


def test_deploy_workflow() -> None:
    workflow = ROOT / ".github/workflows/deploy.yml"
    check = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    text = workflow.read_text()
    assert "branches: [main]" in text and "workflow_dispatch:" in text
    assert re.search(r"^\s+rollback:$", text, re.M) and re.search(r"^\s+ref:$", text, re.M)
    assert "flyctl deploy" in text and "secrets.FLY_API_TOKEN" in text


def caddy_config() -> dict:
    env = {
        **os.environ,
        "CADDY_AUTH_USER": "u",
        "CADDY_AUTH_HASH": "$2a$14$hash",
        "MECODES_HTTP_PORT": "8080",
        "MECODES_HTTP_BIND": "0.0.0.0",
        "MECODES_SIDECAR_PORT": "4097",
        "MECODES_GATE_PORT": "4098",
        "MECODES_OPENCODE_PORT": "4096",
        "MECODES_WEB_ROOT": str(ROOT / "web"),
    }
    adapted = subprocess.run(
        ["caddy", "adapt", "--config", "Caddyfile", "--adapter", "caddyfile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(adapted.stdout)


def test_caddyfile_routes() -> None:
    config = caddy_config()
    assert config["admin"]["disabled"] is True
    routes = config["apps"]["http"]["servers"]["srv0"]["routes"]
    text = {json.dumps(r.get("match")): json.dumps(r) for r in routes}
    gate = '"uri": "/auth/basic"'  # forward_auth to the gate (127.0.0.1:4098), before anything else
    health = text[json.dumps([{"path": ["/admin/health"]}])]
    assert gate not in health and "127.0.0.1:4098" not in health and "127.0.0.1:4097" in health
    admin = text[json.dumps([{"path": ["/admin", "/admin/*"]}])]
    assert admin.index(gate) < admin.index('"delete": ["Authorization"]') and "127.0.0.1:4098" in admin
    assert '"X-Mecodes-Peer": ["{http.request.remote.host}"]' in admin and "127.0.0.1:4097" in admin
    rest = text["null"]
    assert rest.index(gate) < rest.index('"file_server"') and "127.0.0.1:4098" in rest
    assert '"flush_interval": -1' in rest and "127.0.0.1:4096" in rest and '"delete": ["Authorization"]' in rest


def test_procfile_binds_everything_to_loopback() -> None:
    entries = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line and line[0] != "#"
    )
    assert list(entries) == ["redis", "opencode", "sidecar", "worker", "watcher", "gate", "caddy"]
    assert "--bind 127.0.0.1" in entries["redis"] and '--save ""' in entries["redis"]
    assert "--hostname 127.0.0.1" in entries["opencode"]
    assert '--bind "127.0.0.1:' in entries["sidecar"] and "--workers 1" in entries["sidecar"]
    assert "sidecar:create_app()" in entries["sidecar"] and "python -m worker" in entries["worker"]
    assert "python -m watcher" in entries["watcher"]
    assert '-m gate 127.0.0.1 "$MECODES_GATE_PORT"' in entries["gate"]
    assert "after-healthy" in entries["caddy"] and "/global/health" in entries["caddy"]


def test_start_refuses_without_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADDY_AUTH")}
    for missing in ("CADDY_AUTH_USER", "CADDY_AUTH_PASSWORD"):
        given = {"CADDY_AUTH_USER": "u", "CADDY_AUTH_PASSWORD": "p"}
        given.pop(missing)
        result = subprocess.run([ROOT / "bin/start"], env={**env, **given}, capture_output=True, text=True, timeout=10)
        assert result.returncode != 0 and f"{missing} must be set" in result.stderr
