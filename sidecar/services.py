"""The objects every request handler uses, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from domain.config import Settings
from domain.gitcmd import Git
from domain.layout import Layout
from domain.login_limits import LoginLimits
from domain.redis_client import connect
from sidecar.jobqueue import JobQueue


@dataclass(frozen=True)
class Services:
    settings: Settings
    layout: Layout
    git: Git
    jobs: JobQueue
    logins: LoginLimits

    @classmethod
    def create(cls, settings: Settings) -> Services:
        layout = Layout(settings.data_dir)
        layout.ensure()
        redis = connect(settings)
        return cls(settings, layout, Git(settings), JobQueue(redis, settings), LoginLimits(redis, settings))


def services() -> Services:
    return current_app.extensions["mecodes"]
