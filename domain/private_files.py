"""Small files only their owner can read (0600), in a folder only it can enter (0700), written atomically: a reader
sees the old content or the new, never half of either, whatever crashes in between."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def ensure_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def write(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write `text` to `path` atomically. With `replace=False` an existing file wins (two processes making it at
    once agree on one): returns False when one was already there."""
    ensure_folder(path.parent)
    staged = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(staged, path)
        else:
            try:
                os.link(staged, path)  # unlike a rename, never replaces a file made meanwhile
            except FileExistsError:
                return False
        _sync_folder(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
