"""Turning refused input into 4xx JSON errors that name the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

from flask_smorest import abort

from sidecar.names import InvalidName

T = TypeVar("T")


def invalid(location: str, field: str, message: str) -> NoReturn:
    abort(422, message=f"invalid {field}: {message}", errors={location: {field: [message]}})


def parse_path(field: str, parser: Callable[[str], T], value: str) -> T:
    try:
        return parser(value)
    except InvalidName as exc:
        invalid("path", field, str(exc))
