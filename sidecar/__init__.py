"""mecodes sidecar: the HTTP API (Flask), served by `gunicorn 'sidecar:create_app()'`.

It reads state through the domain package and enqueues the worker's jobs by their dotted names; it never imports
the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings=None) -> Flask:
    from sidecar.app import build_app  # imported here so that importing the package stays light

    return build_app(settings)
