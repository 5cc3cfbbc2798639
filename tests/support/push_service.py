"""A stand-in Web Push service on 127.0.0.1, and the browsers subscribed to it.

`subscription(name)` plays a browser: it makes the subscription's keys (an ECDH P-256 pair and a 16-byte auth
secret) and answers its PushSubscription JSON, with the endpoint `/push/<name>` here. Every POST there is recorded
and checked as a real push service and browser would: the VAPID `Authorization: vapid t=<JWT>, k=<key>` (RFC 8292:
ES256 signature, `k` the stack's public key when `expect_key` was given, `aud` this service's origin, `exp` in the
future and within 24 hours, `sub` present), then the RFC 8291 `aes128gcm` body decrypted with the subscription's
private key and auth secret (with `cryptography`, independently of the sender's libraries). `answer(name, status,
times)` makes the next pushes to that endpoint get another status (404, 410, 500, 429 with Retry-After) before 201.
`payloads(name)` are the decrypted JSON payloads accepted (201); `received(name)` every push with what was found.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.support.loopback import LoopbackServer, reply_json


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One subscription's browser side."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 (Web Push encryption) over RFC 8188 (aes128gcm), a single record."""
        salt, record_size, id_length = body[:16], int.from_bytes(body[16:20]), body[20]
        sender = body[21 : 21 + id_length]
        ciphertext = body[21 + id_length :]
        if id_length != 65 or len(ciphertext) > record_size:
            raise ValueError(f"unexpected aes128gcm header: keyid {id_length} bytes, record size {record_size}")
        shared = self.private_key.exchange(
            ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender)
        )
        key_info = b"WebPush: info\x00" + self.public_bytes + sender
        ikm = HKDF(hashes.SHA256(), 32, salt=self.auth, info=key_info).derive(shared)
        cek = HKDF(hashes.SHA256(), 16, salt=salt, info=b"Content-Encoding: aes128gcm\x00").derive(ikm)
        nonce = HKDF(hashes.SHA256(), 12, salt=salt, info=b"Content-Encoding: nonce\x00").derive(ikm)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None).rstrip(b"\x00")
        if not padded.endswith(b"\x02"):
            raise ValueError("the last record's delimiter (0x02) is missing")
        return padded[:-1]


@dataclass
class Push:
    """One POST to an endpoint: what the service answered and what it found."""

    at: float
    status: int
    headers: dict[str, str]
    claims: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def verify_vapid(authorization: str, origin: str, expect_key: str | None) -> tuple[dict[str, Any], list[str]]:
    """The JWT's claims, and what is wrong with the header (nothing: an empty list)."""
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() != "vapid":
        return {}, [f"Authorization scheme {scheme!r}, expected vapid"]
    params = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
    token, key = params.get("t", ""), params.get("k", "")
    errors = []
    if expect_key is not None and key != expect_key:
        errors.append("k is not the stack's public key")
    try:
        header, claims_part, signature = token.split(".")
        signed = f"{header}.{claims_part}".encode()
        raw = unb64url(signature)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
        public.verify(
            encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:])), signed, ec.ECDSA(hashes.SHA256())
        )
        if json.loads(unb64url(header)).get("alg") != "ES256" or len(raw) != 64:
            errors.append("the JWT is not ES256")
        claims = json.loads(unb64url(claims_part))
    except (ValueError, InvalidSignature) as exc:
        return {}, [*errors, f"the JWT does not verify: {type(exc).__name__} {exc}"]
    now = time.time()
    if claims.get("aud") != origin:
        errors.append(f"aud {claims.get('aud')!r}, expected {origin!r}")
    if not isinstance(claims.get("exp"), int) or not now < claims["exp"] <= now + 24 * 3600:
        errors.append(f"exp {claims.get('exp')!r} is not in the next 24 hours")
    if not claims.get("sub"):
        errors.append("sub is missing")
    return claims, errors


class PushService(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.browsers: dict[str, Browser] = {}
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.pushes: dict[str, list[Push]] = {}
        self.expect_key: str | None = None  # the stack's VAPID public key (GET /admin/notifications/key), once known

    def subscription(self, name: str) -> tuple[dict[str, Any], str]:
        """A new browser subscribed at `/push/<name>`: (its PushSubscription JSON, that path)."""
        browser = Browser(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        path = f"/push/{name}"
        with self.lock:
            self.browsers[name] = browser
        keys = {"p256dh": b64url(browser.public_bytes), "auth": b64url(browser.auth)}
        return {"endpoint": f"{self.url}{path}", "expirationTime": None, "keys": keys}, path

    def answer(self, name: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` pushes to `name` get `status` (with Retry-After when given); 201 after them."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self.lock:
            self.answers.setdefault(name, []).extend([(status, headers)] * times)

    def received(self, name: str) -> list[Push]:
        with self.lock:
            return list(self.pushes.get(name, []))

    def payloads(self, name: str) -> list[dict[str, Any]]:
        """The decrypted payloads of the pushes accepted (201) and found valid."""
        return [p.payload for p in self.received(name) if p.status == 201 and not p.errors and p.payload is not None]

    def errors(self) -> list[str]:
        with self.lock:
            return [f"{name}: {e}" for name, pushes in self.pushes.items() for p in pushes for e in p.errors]

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        name = handler.path.removeprefix("/push/")
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            browser = self.browsers.get(name)
            queued = self.answers.get(name) or []
            status, extra = queued.pop(0) if queued else (201, {})
        if handler.command != "POST" or browser is None:
            reply_json(handler, 404, {"error": "no such subscription"})
            return
        push = Push(time.time(), status, headers)
        push.claims, push.errors = verify_vapid(headers.get("authorization", ""), self.url, self.expect_key)
        if headers.get("content-encoding") != "aes128gcm":
            push.errors.append(f"Content-Encoding {headers.get('content-encoding')!r}, expected aes128gcm")
        if not headers.get("ttl", "").isdigit():
            push.errors.append("TTL header missing")
        try:
            push.payload = json.loads(browser.decrypt(body))
        except Exception as exc:  # anything wrong with the message is what the test wants to see
            push.errors.append(f"cannot decrypt: {type(exc).__name__} {exc}")
        if push.errors and status == 201:
            push.status = status = 400  # as a real service refuses a push it cannot authenticate
        with self.lock:
            self.pushes.setdefault(name, []).append(push)
        handler.send_response(status)
        for key, value in extra.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


class JsonHook(LoopbackServer):
    """An HTTP endpoint recording the JSON POSTed to it, as Apprise's `json://` sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for at, body in self.posts if at == path]

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        with self.lock:
            self.posts.append((handler.path, json.loads(body or b"null")))
        reply_json(handler, 200, {"ok": True})
