"""Basic-auth credentials checked against the stack's bcrypt hash (from `caddy hash-password` in bin/start).

Two things keep the slow hash from costing the machine more than it must:
- At most one bcrypt runs at a time in the whole process, whoever asks: a check that finds it busy is told so at
  once rather than queueing, so guesses from any number of addresses together take one core at most.
- The right user and password, once verified, are remembered as a keyed digest (a random key made at start, in
  memory only), so the owner's requests cost a hash lookup, never a second bcrypt. Wrong pairs are not remembered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
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
        self._slot = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._user and self._hash)

    @property
    def busy(self) -> bool:
        """Whether a bcrypt is running now (a guess would be told to come back)."""
        return self._slot.locked()

    def _digest(self, credentials: Credentials) -> bytes:
        return hmac.new(self._key, credentials.user + b"\0" + credentials.password, hashlib.sha256).digest()

    def remembered(self, credentials: Credentials) -> bool:
        """Whether these are the credentials already verified (no bcrypt)."""
        verified = self._verified
        return verified is not None and hmac.compare_digest(verified, self._digest(credentials))

    def verify(self, credentials: Credentials) -> bool | None:
        """Run bcrypt (about a second at cost 14): True or False, or None when another check holds the one slot.
        A wrong user costs the same bcrypt as a wrong password, so the time taken tells nothing."""
        if not self.configured:
            return False
        if not self._slot.acquire(blocking=False):
            return None
        try:
            right_password = bcrypt.checkpw(credentials.password[:BCRYPT_MAX_BYTES], self._hash)
        finally:
            self._slot.release()
        right = hmac.compare_digest(credentials.user, self._user) and right_password
        if right:
            self._verified = self._digest(credentials)
        return right
