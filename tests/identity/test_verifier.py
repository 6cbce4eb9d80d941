"""Agent identity: real tokens for every rejection, a JWKS served over HTTP on localhost."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.config import IdentitySettings, LocalIssuer, OidcIssuer
from broker.errors import Unauthenticated
from broker.identity.jwks import JwksCache
from broker.identity.mint import mint_agent_token
from broker.identity.model import AgentIdentity
from broker.identity.requesters import may_request
from broker.identity.verifier import TokenVerifier
from broker.keys import load_keys
from broker.scopes.model import Requester, Scope
from tests.fixtures.broker import make_broker

ISSUER = "https://ci.example.test"
AUDIENCE = "credential-broker"


@dataclass
class JwksServer:
    url: str
    keys: dict[str, Any]  # kid -> private key
    hits: list[str]

    def publish(self, kid: str, key: Any) -> None:
        self.keys[kid] = key


def _jwk(kid: str, key: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
        data["alg"] = "RS256"
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
        data["alg"] = "ES256"
    data["kid"] = kid
    return dict(data)


@pytest.fixture()
def jwks() -> Iterator[JwksServer]:
    state = JwksServer("", {}, [])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state.hits.append(self.path)
            body = json.dumps({"keys": [_jwk(k, v) for k, v in state.keys.items()]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def settings(jwks_url: str, **changes: Any) -> IdentitySettings:
    oidc = OidcIssuer(
        name="ci",
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url=jwks_url,
        algorithms=("RS256", "ES256"),
        identity_claims=("sub", "repository"),
        required_claims=("repository",),
    )
    return IdentitySettings(
        local=LocalIssuer(), oidc=(oidc,), jwks_min_refresh_seconds=30, **changes
    )


def ci_token(
    key: Any = RSA_KEY, kid: str = "k1", algorithm: str = "RS256", **overrides: Any
) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "repo:acme/payments:ref:refs/heads/main",
        "repository": "acme/payments",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture()
def verifier(jwks: JwksServer, tmp_path: Path) -> TokenVerifier:
    jwks.publish("k1", RSA_KEY)
    return TokenVerifier(settings(jwks.url), load_keys(tmp_path / "state"))


def reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as error:
        verifier.verify(token)
    return error.value.message


def test_a_valid_ci_token_gives_its_identity(verifier: TokenVerifier) -> None:
    identity = verifier.verify(ci_token())
    assert identity.issuer == "ci"
    assert identity.subject == "repo:acme/payments:ref:refs/heads/main"
    assert identity.claims == {
        "iss": ISSUER,
        "sub": identity.subject,
        "repository": "acme/payments",
    }


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"k1"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(
        json.dumps(
            {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": "x",
                "repository": "r",
                "iat": int(time.time()),
                "exp": int(time.time()) + 60,
            }
        ).encode()
    ).rstrip(b"=")
    assert (
        reason(verifier, f"{header.decode()}.{payload.decode()}.")
        == "unsigned token (alg: none) refused"
    )


def test_hs256_signed_with_the_public_key_is_refused(verifier: TokenVerifier) -> None:
    """Key confusion: an attacker signs HS256 with the issuer's published RSA public key."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "x",
        "repository": "r",
        "iat": now,
        "exp": now + 60,
    }
    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    segments = [
        base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=") for p in (header, claims)
    ]
    signature = hmac.new(public_pem, b".".join(segments), hashlib.sha256).digest()
    token = b".".join([*segments, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()
    assert reason(verifier, token) == "algorithm HS256 is not accepted for this issuer"


def test_an_rs256_token_cannot_use_an_ec_key(verifier: TokenVerifier, jwks: JwksServer) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks.publish("ec1", ec_key)
    token = ci_token(key=RSA_KEY, kid="ec1")  # claims RS256, names an ES256 key
    assert "signing key is for ES256, not RS256" == reason(verifier, token)


def test_expired_and_not_yet_valid(verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert reason(verifier, ci_token(iat=now - 7200, exp=now - 3600)) == "token expired"
    assert reason(verifier, ci_token(nbf=now + 3600)) == "token not yet valid"
    assert reason(verifier, ci_token(iat=now + 3600, exp=now + 7200)) in (
        "token issued in the future",
        "token not yet valid",
    )


def test_wrong_issuer_and_audience(verifier: TokenVerifier) -> None:
    assert reason(verifier, ci_token(iss="https://evil.example")) == "unknown token issuer"
    assert reason(verifier, ci_token(aud="another-service")) == "token audience is not this broker"


def test_missing_required_claims(verifier: TokenVerifier) -> None:
    assert (
        reason(verifier, ci_token(repository=None)) == "token lacks the required claim 'repository'"
    )
    assert reason(verifier, ci_token(exp=None)) == "token lacks the required claim 'exp'"


def test_bad_signature(verifier: TokenVerifier) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert reason(verifier, ci_token(key=other)) == "bad token signature"


def test_oversized_and_malformed_tokens(verifier: TokenVerifier) -> None:
    assert reason(verifier, "x" * 10_000) == "token is larger than 8192 bytes"
    assert reason(verifier, "not.a.jwt") == "malformed token"
    assert reason(verifier, "") == "malformed token"


def test_unknown_kid_refreshes_the_key_set_at_most_once_per_period(
    verifier: TokenVerifier, jwks: JwksServer
) -> None:
    verifier.verify(ci_token())
    fetches = len(jwks.hits)
    assert reason(verifier, ci_token(kid="nope-0")) == "unknown signing key (kid)"
    assert len(jwks.hits) == fetches  # the set was fetched moments ago: not again yet
    later = time.monotonic() + 31
    verifier.jwks.clock = lambda: later  # past jwks_min_refresh (30 s)
    assert reason(verifier, ci_token(kid="nope-1")) == "unknown signing key (kid)"
    assert len(jwks.hits) == fetches + 1  # one refresh, in case the issuer rotated keys
    for i in range(5):
        reason(verifier, ci_token(kid=f"nope-{i + 2}"))
    assert len(jwks.hits) == fetches + 1  # rate limited: a flood cannot amplify fetches


def test_a_rotated_key_is_picked_up(verifier: TokenVerifier, jwks: JwksServer) -> None:
    verifier.verify(ci_token())
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish("k2", new_key)
    verifier.jwks.clock = lambda: time.monotonic() + 60  # past the refresh rate limit
    assert verifier.verify(ci_token(key=new_key, kid="k2")).issuer == "ci"


def test_jwks_unreachable_is_a_clear_refusal(tmp_path: Path) -> None:
    verifier = TokenVerifier(
        settings("http://127.0.0.1:9/jwks"), load_keys(tmp_path / "s"), JwksCache(timeout_seconds=1)
    )
    assert reason(verifier, ci_token()) == "the token issuer's keys are unreachable"


def test_broker_minted_tokens(tmp_path: Path, jwks: JwksServer) -> None:
    keys = load_keys(tmp_path / "state")
    verifier = TokenVerifier(settings(jwks.url), keys)
    token = mint_agent_token(keys, LocalIssuer(), "release-bot", 600)
    identity = verifier.verify(token)
    assert identity.subject == "agent:release-bot" and identity.issuer == "local"
    other_keys = load_keys(tmp_path / "other")
    forged = mint_agent_token(other_keys, LocalIssuer(), "release-bot", 600)
    assert reason(verifier, forged) == "unknown signing key (kid)"
    disabled = TokenVerifier(IdentitySettings(local=LocalIssuer(enabled=False)), keys)
    assert reason(disabled, token) == "unknown token issuer"


def scope_with(*requesters: Requester) -> Scope:
    return Scope(service="s", description="", requesters=requesters, environments={}, tiers={})


def test_requester_matching() -> None:
    ci = AgentIdentity(
        issuer="ci",
        subject="repo:acme/payments:ref:refs/heads/main",
        claims={"iss": ISSUER, "repository": "acme/payments", "ref": "refs/heads/main"},
    )
    assert may_request(
        scope_with(Requester(claims={"repository": "acme/payments"}, issuer="ci")), ci
    )
    assert may_request(scope_with(Requester(claims={"iss": ISSUER, "repository": "acme/*"})), ci)
    assert may_request(
        scope_with(
            Requester(claims={"repository": "acme/*", "ref": "refs/heads/main"}, issuer="ci")
        ),
        ci,
    )
    assert not may_request(
        scope_with(
            Requester(claims={"repository": "acme/payments", "ref": "refs/heads/dev"}, issuer="ci")
        ),
        ci,
    )
    assert not may_request(scope_with(Requester(claims={"environment": "production"})), ci)
    assert not may_request(scope_with(Requester(subject="repo:acme/payments")), ci)
    assert may_request(scope_with(Requester(subject=ci.subject, issuer="ci")), ci)
    assert not may_request(scope_with(Requester(claims={})), ci)
    assert not may_request(scope_with(), ci)


def test_a_requester_matches_one_issuer_only() -> None:
    """The same subject (or claims) from another issuer is another agent."""
    local = AgentIdentity(issuer="local", subject="agent:ops", claims={"iss": "broker-local"})
    tenant = AgentIdentity(issuer="saas", subject="agent:ops", claims={"iss": ISSUER})
    ci = AgentIdentity(
        issuer="ci", subject="repo:acme/payments", claims={"iss": "https://ci.example.test"}
    )
    by_subject = scope_with(Requester(subject="agent:ops"))  # no issuer: the local one
    assert may_request(by_subject, local) and not may_request(by_subject, tenant)
    tenants = scope_with(Requester(subject="agent:ops", issuer="saas"))
    assert may_request(tenants, tenant) and not may_request(tenants, local)
    # Claims without an issuer are the local issuer's too: a sub glob is not a way across.
    glob = scope_with(Requester(claims={"sub": "agent:*"}))
    assert may_request(glob, local) and not may_request(glob, tenant)
    pinned = scope_with(Requester(claims={"iss": ISSUER, "sub": "agent:ops"}))
    assert may_request(pinned, tenant) and not may_request(pinned, local)
    assert not may_request(scope_with(Requester(subject=ci.subject)), ci)


def test_unauthenticated_api_calls_are_401_and_audited(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    client = broker.client
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer garbage"},
    ):
        response = client.post("/v1/credentials", json={}, headers=headers)
        assert response.status_code == 401
        assert set(response.json) == {"error", "message", "request_id"}
    failures = [r for r in broker.services.store.audit_records() if r.action == "authenticate"]
    assert len(failures) == 3 and all(r.outcome == "denied" for r in failures)
