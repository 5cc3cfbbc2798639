"""mecodes sidecar: the HTTP API for the git lifecycle (served by `gunicorn 'sidecar:create_app()'`).

The modules beside the API (config, names, layout, gitcmd, inventory, locks, jobqueue) are shared with the
worker; the API itself only reads state and enqueues jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings=None) -> Flask:
    from sidecar.app import build_app  # imported here so the worker does not load Flask

    return build_app(settings)
