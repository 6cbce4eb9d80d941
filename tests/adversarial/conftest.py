"""Fixtures of the adversarial suite: an OIDC provider serving its JWKS over real HTTP."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.config import OidcIssuer

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "ci-key-1"


@dataclass
class OidcProvider:
    """A CI system's identity provider: its JWKS is served on localhost; it signs anything.

    ``sign`` takes claims as a mapping or as raw JSON text, so tests can hand the broker
    properly signed tokens whose claims no honest library would write (NaN, 10**400...).
    """

    issuer: str
    audience: str
    jwks_url: str

    def config(self, **changes: Any) -> OidcIssuer:
        settings: dict[str, Any] = {
            "name": "ci",
            "issuer": self.issuer,
            "audience": self.audience,
            "jwks_url": self.jwks_url,
            "algorithms": ("RS256",),
            "identity_claims": ("sub", "repository", "workflow"),
            "required_claims": ("repository",),
            **changes,
        }
        return OidcIssuer(**settings)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "repo:acme/payments:ref:refs/heads/main",
            "repository": "acme/payments",
            "workflow": "deploy",
            "iat": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return claims

    def sign(
        self,
        claims: Mapping[str, Any] | str,
        headers: Mapping[str, Any] | None = None,
        key: Any = RSA_KEY,
        algorithm: str = "RS256",
    ) -> str:
        """A JWS over exactly these bytes; headers are written as given, however odd."""
        payload = claims if isinstance(claims, str) else json.dumps(dict(claims))
        header = json.dumps({"alg": algorithm, "typ": "JWT", "kid": KID, **(headers or {})})
        signing_input = f"{_b64(header.encode())}.{_b64(payload.encode())}".encode()
        signer = jwt.algorithms.get_default_algorithms()[algorithm]
        signature = signer.sign(signing_input, signer.prepare_key(key))
        return f"{signing_input.decode()}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks_document() -> bytes:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return json.dumps({"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}).encode()


@pytest.fixture()
def oidc() -> Iterator[OidcProvider]:
    body = _jwks_document()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield OidcProvider(
        issuer="https://ci.example.test",
        audience="credential-broker",
        jwks_url=f"http://127.0.0.1:{port}/.well-known/jwks.json",
    )
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
