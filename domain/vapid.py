"""The stack's VAPID key pair (RFC 8292), which signs every Web Push: made once, on first need, and kept in
`MECODES_NOTIFY_DIR/vapid.json` (0600, on the volume), so phones stay subscribed across restarts and deploys.

The phone subscribes with the public key (its `applicationServerKey`); the worker signs with the private key. The
private key is never in a response, a log, job data or an error: errors name the file, never its content.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from domain import private_files

KEY_FILE = "vapid.json"


class VapidKeyError(RuntimeError):
    pass


def public_key(folder: Path) -> str:
    """The public key as the browser takes it: base64url (no padding) of the uncompressed P-256 point."""
    return _keys(folder)["public_key"]


def private_pem(folder: Path) -> bytes:
    """The private key, PKCS#8 PEM, for signing."""
    return _keys(folder)["private_key"].encode()


def ensure(folder: Path) -> None:
    _keys(folder)


def _keys(folder: Path) -> dict[str, str]:
    path = folder / KEY_FILE
    if not path.exists():
        _create(path)
    try:
        keys = json.loads(path.read_text())
        if not isinstance(keys.get("private_key"), str) or not isinstance(keys.get("public_key"), str):
            raise ValueError("a key is missing")
    except (OSError, ValueError, AttributeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not the key pair this stack writes"
        raise VapidKeyError(
            f"the VAPID key file {path} cannot be read ({reason}); remove it to make a new pair"
            " (every device then has to turn notifications on again)"
        ) from None
    return keys


def _create(path: Path) -> None:
    """Two processes making it at once (the sidecar and the worker at start) end up with the same pair: the first
    file linked into place wins."""
    # Imported here: only making the pair needs cryptography (about 10 MB the sidecar would otherwise carry).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = base64.urlsafe_b64encode(point).rstrip(b"=").decode()
    private_files.write(path, json.dumps({"public_key": public, "private_key": pem}) + "\n", replace=False)
