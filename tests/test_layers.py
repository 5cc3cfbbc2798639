"""The layers: the domain imports neither Flask nor RQ nor the packages above it; the API, the jobs and the login gate
import the domain and never each other; every job the API enqueues by name exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB_FRAMEWORK = {"flask", "flask_smorest", "marshmallow", "werkzeug", "gunicorn"}
JOB_QUEUE = {"rq"}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Module path → the top-level packages it imports (at any depth in the module)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("domain", WEB_FRAMEWORK | JOB_QUEUE | {"sidecar", "worker", "gate"}),
        ("sidecar", {"worker", "gate"}),
        ("worker", WEB_FRAMEWORK | {"sidecar", "gate"}),
        ("gate", WEB_FRAMEWORK | JOB_QUEUE | {"sidecar", "worker"}),
        ("watcher", WEB_FRAMEWORK | {"sidecar", "worker", "gate"}),
    ],
)
def test_package_keeps_to_its_layer(package: str, forbidden: set[str]) -> None:
    offending = {module: names & forbidden for module, names in imported_packages(package).items() if names & forbidden}
    assert offending == {}


def test_every_job_the_api_enqueues_exists() -> None:
    names = set()
    for path in [*(ROOT / "sidecar").rglob("*.py"), *(ROOT / "watcher").rglob("*.py")]:
        names |= set(re.findall(r'"(worker\.jobs\.\w+)"', path.read_text()))
    assert len(names) >= 8
    jobs = importlib.import_module("worker.jobs")
    assert {name for name in names if not callable(getattr(jobs, name.rsplit(".", 1)[1], None))} == set()
