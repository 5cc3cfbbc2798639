"""Basic-auth credentials checked against the stack's bcrypt hash (from `caddy hash-password` in bin/start).

The right user and password, once verified, are remembered as a keyed digest (a random key made at start, in memory
only), so the owner's requests cost a hash lookup, never a second bcrypt. Wrong pairs are not remembered. How many
checks may run at once is the caller's to decide (domain/login_gate.py: one).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import bcrypt

# bcrypt reads no more of a password than this; Caddy's hash-password cut longer ones there too.
BCRYPT_MAX_BYTES = 72


@dataclass(frozen=True)
class Credentials:
    user: bytes
    password: bytes


class PasswordCheck:
    def __init__(self, user: str, bcrypt_hash: str):
        self._user = user.encode()
        self._hash = bcrypt_hash.encode()
        self._key = secrets.token_bytes(32)
        self._verified: bytes | None = None

    def _digest(self, credentials: Credentials) -> bytes:
        return hmac.new(self._key, credentials.user + b"\0" + credentials.password, hashlib.sha256).digest()

    def remembered(self, credentials: Credentials) -> bool:
        """Whether these are the credentials already verified (no bcrypt)."""
        verified = self._verified
        return verified is not None and hmac.compare_digest(verified, self._digest(credentials))

    def verify(self, credentials: Credentials) -> bool:
        """Run bcrypt (about a second at cost 14). A wrong user costs the same bcrypt as a wrong password, so the time
        taken tells nothing. Without a user and hash configured, nothing is right."""
        if not (self._user and self._hash):
            return False
        right_password = bcrypt.checkpw(credentials.password[:BCRYPT_MAX_BYTES], self._hash)
        right = hmac.compare_digest(credentials.user, self._user) and right_password
        if right:
            self._verified = self._digest(credentials)
        return right
