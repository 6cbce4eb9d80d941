"""Fuzzing the two token parsers an attacker can reach: agent JWTs and approval links.

The agent token verifier (broker-minted tokens and an OIDC issuer whose JWKS is served over
HTTP) and the approval-link parser get random text, random JWT-shaped junk, real tokens
with flipped bits, and tokens that are properly signed but carry absurd headers and claims
(the last kind needs the signing key, so it tests defence in depth: what a trusted issuer
could send by mistake). The verifier always answers with an identity or Unauthenticated and
a one-line reason, never another exception; a mutation never yields a different identity;
and nothing the broker did not mint is ever accepted as an approval link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker.approvals.links import LinkClaims, LinkSigner
from broker.config import IdentitySettings, LocalIssuer
from broker.errors import Unauthenticated
from broker.identity.mint import mint_agent_token
from broker.identity.model import AgentIdentity
from broker.identity.verifier import TokenVerifier
from broker.keys import BrokerKeys, load_keys
from tests.adversarial.support import patient_broker
from tests.fixtures.agent_issuer import RSA_KEY, OidcProvider
from tests.fixtures.broker import Broker

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
UNSIGNED_HEADER = b'{"alg":"none","typ":"JWT"}'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip_bit(token: str, segment: int, bit: int) -> str:
    """``token`` with one bit of one decoded segment flipped (re-encoded canonically)."""
    parts = token.split(".")
    raw = bytearray(unb64(parts[segment]))
    raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    parts[segment] = b64(bytes(raw))
    return ".".join(parts)


# -- strategies -------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# Numbers JSON parsers accept that json.dumps would never write, as raw JSON text.
ODD_NUMBERS = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "-1" + "0" * 400, "1.5"]
)

junk_tokens = st.one_of(
    st.text(max_size=300),
    st.lists(st.text(alphabet=B64URL, max_size=60), min_size=1, max_size=6).map(".".join),
    st.lists(st.binary(max_size=60).map(b64), min_size=2, max_size=4).map(".".join),
    st.tuples(JSON_VALUES, JSON_VALUES, st.binary(max_size=80)).map(
        lambda t: ".".join(b64(json.dumps(p).encode()) for p in t[:2]) + "." + b64(t[2])
    ),
)


def _claims_text(base: dict[str, Any], changes: dict[str, Any], odd: dict[str, str]) -> str:
    """``base`` updated with ``changes`` as JSON, then some values replaced by raw odd text."""
    claims = {**base, **changes}
    for name in odd:
        claims[name] = f"@@{name}@@"
    text = json.dumps(claims)
    for name, raw in odd.items():
        text = text.replace(json.dumps(f"@@{name}@@"), raw)
    return text


CLAIM_NAMES = ["iss", "aud", "sub", "iat", "exp", "nbf", "jti", "repository", "workflow"]
claim_changes = st.dictionaries(st.sampled_from(CLAIM_NAMES), JSON_VALUES, max_size=4)
# Strings JSON can carry that are not storable text: a lone surrogate, a NUL.
ODD_TEXTS = st.sampled_from(['"\\ud800"', '"a\\udfff"', '"\\u0000"', '"x\\u0000y"'])
odd_claims = st.dictionaries(
    st.sampled_from(["iat", "exp", "nbf"]), ODD_NUMBERS, max_size=2
) | st.dictionaries(
    st.sampled_from(["sub", "repository", "workflow", "jti"]), ODD_TEXTS, max_size=2
)
header_changes = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x5u", "b64"]),
    st.sampled_from(
        ["none", "None", "HS256", "RS256", "EdDSA", "ES256", "../../etc/passwd", "", "JWT"]
    )
    | JSON_VALUES,
    max_size=3,
)


# -- the agent token verifier -----------------------------------------------------------


@pytest.fixture()
def keys(tmp_path: Path) -> BrokerKeys:
    return load_keys(tmp_path / "state")


@pytest.fixture()
def verifier(keys: BrokerKeys, oidc: OidcProvider) -> TokenVerifier:
    return TokenVerifier(IdentitySettings(local=LocalIssuer(), oidc=(oidc.config(),)), keys)


def outcome(verifier: TokenVerifier, token: str) -> AgentIdentity | str:
    """The identity, or the one-line reason; any other exception fails the test."""
    try:
        identity = verifier.verify(token)
    except Unauthenticated as e:
        assert e.message and "\n" not in e.message and len(e.message) <= 200, e.message
        return e.message
    for text in (identity.subject, identity.token_id or "", *identity.claims.values()):
        assert "\x00" not in text
        text.encode("utf-8")  # storable: no lone surrogate
    return identity


def local_token(keys: BrokerKeys, agent: str = "payments-copilot") -> str:
    return mint_agent_token(keys, LocalIssuer(), agent, 600)


def sign_local(keys: BrokerKeys, payload: str, headers: dict[str, Any]) -> str:
    """A token over exactly these bytes, signed with the broker's own agent key."""
    header = {"alg": "EdDSA", "typ": "JWT", "kid": keys.agent_key_id, **headers}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload.encode())}"
    signature = keys.agent_signing_key.sign(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


@FUZZ
@given(token=junk_tokens)
def test_junk_is_unauthenticated(verifier: TokenVerifier, token: str) -> None:
    assert isinstance(outcome(verifier, token), str)


@FUZZ
@given(
    segment=st.integers(0, 2), bit=st.integers(0, 10_000), which=st.sampled_from(["local", "ci"])
)
def test_a_flipped_bit_is_unauthenticated(
    verifier: TokenVerifier,
    keys: BrokerKeys,
    oidc: OidcProvider,
    segment: int,
    bit: int,
    which: str,
) -> None:
    token = local_token(keys) if which == "local" else oidc.sign(oidc.claims())
    assert isinstance(outcome(verifier, token), AgentIdentity)
    assert isinstance(outcome(verifier, flip_bit(token, segment, bit)), str)


@FUZZ
@given(
    index=st.integers(0, 2000),
    char=st.sampled_from(B64URL + ".=+/ \t"),
    cut=st.integers(0, 3),
    which=st.sampled_from(["local", "ci"]),
)
def test_a_mangled_token_never_names_anyone_else(
    verifier: TokenVerifier,
    keys: BrokerKeys,
    oidc: OidcProvider,
    index: int,
    char: str,
    cut: int,
    which: str,
) -> None:
    """Text-level edits: a changed character, a truncation, segments swapped or repeated.

    Base64 lets a last character carry unused bits, so an edit can leave the signed bytes
    unchanged; then the token still proves the same identity, never another one.
    """
    token = local_token(keys) if which == "local" else oidc.sign(oidc.claims())
    original = outcome(verifier, token)
    assert isinstance(original, AgentIdentity)
    position = index % len(token)
    parts = token.split(".")
    variants = [
        token[:position] + char + token[position + 1 :],
        token[: len(token) - cut - 1],
        ".".join([parts[1], parts[0], parts[2]]),
        ".".join([parts[0], parts[1], parts[1]]),
        ".".join([*parts, parts[2]]),
        token + char,
    ]
    for variant in variants:
        if variant == token:
            continue
        result = outcome(verifier, variant)
        if isinstance(result, AgentIdentity):
            assert (result.issuer, result.subject, result.claims) == (
                original.issuer,
                original.subject,
                original.claims,
            ), variant


@FUZZ
@given(changes=claim_changes, odd=odd_claims, headers=header_changes)
def test_signed_oddities_from_the_broker_key(
    verifier: TokenVerifier,
    keys: BrokerKeys,
    changes: dict[str, Any],
    odd: dict[str, str],
    headers: dict[str, Any],
) -> None:
    now = int(time.time())
    base = {
        "iss": "broker-local",
        "aud": "credential-broker",
        "sub": "agent:x",
        "iat": now,
        "exp": now + 600,
    }
    result = outcome(verifier, sign_local(keys, _claims_text(base, changes, odd), headers))
    if isinstance(result, AgentIdentity):
        assert isinstance(result.subject, str) and result.subject
        assert result.expires_at is not None and result.expires_at > now


@FUZZ
@given(changes=claim_changes, odd=odd_claims, headers=header_changes)
def test_signed_oddities_from_the_oidc_issuer(
    verifier: TokenVerifier,
    oidc: OidcProvider,
    changes: dict[str, Any],
    odd: dict[str, str],
    headers: dict[str, Any],
) -> None:
    headers = {k: v for k, v in headers.items() if k != "alg"}  # the signature's algorithm
    result = outcome(verifier, oidc.sign(_claims_text(oidc.claims(), changes, odd), headers))
    if isinstance(result, AgentIdentity):
        assert all(isinstance(v, str) for v in result.claims.values())


def test_key_confusion_and_unsigned_variants(
    verifier: TokenVerifier, keys: BrokerKeys, oidc: OidcProvider
) -> None:
    """The classic forgeries, each refused: none, HS256 keyed with a public key, wrong key."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = json.dumps(oidc.claims())
    unsigned = f"{b64(UNSIGNED_HEADER)}.{b64(claims.encode())}."
    forged = [
        unsigned,
        unsigned + "AAAA",
        hs256(public_pem, claims, {"kid": "ci-key-1"}),
        oidc.sign(claims, key=keys.agent_signing_key, algorithm="EdDSA"),
        sign_local(keys, claims, {"kid": "ci-key-1"}),
        oidc.sign(json.dumps({**oidc.claims(), "iss": "broker-local"})),
    ]
    for token in forged:
        assert isinstance(outcome(verifier, token), str), token


@pytest.mark.parametrize(
    ("claim", "raw"),
    [("exp", "1" + "0" * 400), ("iat", "-1" + "0" * 400), ("exp", "NaN"), ("iat", "Infinity")],
)
def test_absurd_times_signed_by_a_trusted_issuer_are_refused(
    verifier: TokenVerifier, keys: BrokerKeys, oidc: OidcProvider, claim: str, raw: str
) -> None:
    """Regression: a signed 400-digit exp or iat overflowed float() and became a 500."""
    now = int(time.time())
    base = {
        "iss": "broker-local",
        "aud": "credential-broker",
        "sub": "agent:x",
        "iat": now,
        "exp": now + 600,
    }
    for token in (
        sign_local(keys, _claims_text(base, {}, {claim: raw}), {}),
        oidc.sign(_claims_text(oidc.claims(), {}, {claim: raw})),
    ):
        assert isinstance(outcome(verifier, token), str)


# -- approval links ---------------------------------------------------------------------

LINK_SECRET = b"the broker's link secret, 32 bytes+"
OTHER_SECRET = b"some other broker's secret, 32 b.."


@pytest.fixture()
def signer() -> LinkSigner:
    return LinkSigner(LINK_SECRET, "http://127.0.0.1:8080", 3600)


def link_outcome(signer: LinkSigner, token: str) -> LinkClaims | str:
    try:
        return signer.parse(token, now=time.time())
    except Unauthenticated as e:
        assert e.message.startswith("approval link") and "\n" not in e.message, e.message
        return e.message


@FUZZ
@given(token=junk_tokens)
def test_link_junk_is_refused(signer: LinkSigner, token: str) -> None:
    assert isinstance(link_outcome(signer, token), str)


@FUZZ
@given(segment=st.integers(0, 2), bit=st.integers(0, 10_000))
def test_a_link_with_a_flipped_bit_is_refused(signer: LinkSigner, segment: int, bit: int) -> None:
    token = signer.mint("req_" + "a" * 26, "alice")
    assert isinstance(link_outcome(signer, token), LinkClaims)
    assert isinstance(link_outcome(signer, flip_bit(token, segment, bit)), str)


@FUZZ
@given(index=st.integers(0, 2000), char=st.sampled_from(B64URL + ".=+/ "))
def test_a_mangled_link_never_names_another_request_or_approver(
    signer: LinkSigner, index: int, char: str
) -> None:
    token = signer.mint("req_" + "a" * 26, "alice")
    position = index % len(token)
    variant = token[:position] + char + token[position + 1 :]
    assume(variant != token)
    result = link_outcome(signer, variant)
    if isinstance(result, LinkClaims):  # only an unused base64 bit changed
        assert (result.request_id, result.approver) == ("req_" + "a" * 26, "alice")


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(["iss", "aud", "typ", "jti", "req", "apr", "iat", "exp"]),
        JSON_VALUES,
        max_size=4,
    ),
    odd=odd_claims,
    other_key=st.booleans(),
)
def test_links_with_odd_claims(
    signer: LinkSigner, changes: dict[str, Any], odd: dict[str, str], other_key: bool
) -> None:
    """Signed with another key: always refused. With the broker's own key (defence in
    depth): refused unless every claim is as the broker writes it."""
    now = int(time.time())
    base = {
        "iss": signer.issuer,
        "aud": "broker-approval",
        "typ": "approval-link",
        "jti": "j" * 22,
        "req": "req_" + "b" * 26,
        "apr": "bob",
        "iat": now,
        "exp": now + 600,
    }
    odd = {k: v for k, v in odd.items() if k != "nbf"}
    text = _claims_text(base, changes, odd)
    key = LinkSigner(OTHER_SECRET if other_key else LINK_SECRET, signer.issuer, 3600)._key
    token = hs256(key, text)
    result = link_outcome(signer, token)
    if other_key:
        assert isinstance(result, str)
    elif isinstance(result, LinkClaims):
        assert now < result.expires_at < float("inf")


def hs256(key: bytes, payload: str, headers: dict[str, Any] | None = None) -> str:
    """An HS256 token over exactly these claim bytes (PyJWT refuses a PEM as the secret)."""
    header = json.dumps({"alg": "HS256", "typ": "JWT", **(headers or {})}).encode()
    signing_input = f"{b64(header)}.{b64(payload.encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "1" + "0" * 400, "1e999"])
def test_a_link_that_would_never_expire_is_refused(signer: LinkSigner, raw: str) -> None:
    """Regression: exp NaN (or infinite) made a link valid forever; 10**400 was a 500."""
    now = int(time.time())
    base = {
        "iss": signer.issuer,
        "aud": "broker-approval",
        "typ": "approval-link",
        "jti": "j" * 22,
        "req": "req_" + "b" * 26,
        "apr": "bob",
        "iat": now,
        "exp": now + 600,
    }
    token = hs256(signer._key, _claims_text(base, {}, {"exp": raw}))
    assert isinstance(link_outcome(signer, token), str)


def test_agent_tokens_are_not_links(signer: LinkSigner, keys: BrokerKeys) -> None:
    assert isinstance(link_outcome(signer, local_token(keys)), str)
    assert isinstance(
        link_outcome(signer, sign_local(keys, json.dumps({"typ": "approval-link"}), {})), str
    )


@pytest.fixture(scope="module")
def page_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    made = patient_broker(tmp_path_factory.mktemp("page"))
    yield made
    made.services.close()


@FUZZ
@given(token=junk_tokens | st.sampled_from(["..", "%2e%2e", "a" * 5000, "\u202e", "%00"]))
def test_the_approval_page_answers_junk_links_with_401(page_broker: Broker, token: str) -> None:
    """Through HTTP: a junk link gets a 401 page (a 404 when its '/' makes it no link at
    all), never a 500."""
    response = page_broker.client.get("/approve/" + quote(token, safe=""))
    assert response.status_code in (401, 404), (token, response.status_code)
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_signed_claim_that_is_not_text_is_refused(
    tmp_path: Path, postgres_url: str, oidc: OidcProvider
) -> None:
    """Regression: a trusted issuer's token with a lone surrogate or a NUL in its subject,
    an identity claim or its id was a 500 (or on PostgreSQL a 503) once it reached the
    store; it is a 401 now."""
    broker = patient_broker(
        tmp_path,
        store_url=postgres_url,
        identity=IdentitySettings(local=LocalIssuer(), oidc=(oidc.config(),)),
    )
    scope = broker.services.settings.scopes_dir / "payments.yaml"
    scope.write_text(
        scope.read_text().replace(
            "requesters:\n", f'requesters:\n  - claims: {{iss: "{oidc.issuer}"}}\n', 1
        )
    )
    assert broker.services.scopes.reload().applied
    write = {
        "service": "payments",
        "environment": "prod",
        "region": "us-east-1",
        "tier": "write",
        "backend": "aws",
        "resources": ["arn:aws:s3:::payments-prod-invoices/x"],
    }
    for claim in ("sub", "repository", "jti"):
        for raw in ('"x\\ud800"', '"x\\u0000y"'):
            text = json.dumps(oidc.claims(**{claim: "@@"})).replace('"@@"', raw)
            headers = {"Authorization": f"Bearer {oidc.sign(text)}"}
            for response in (
                broker.client.get("/v1/scopes", headers=headers),
                broker.client.post("/v1/credentials", json=write, headers=headers),
            ):
                assert response.status_code == 401, (claim, raw, response.get_data(as_text=True))
                assert response.get_json()["message"] == f"claim '{claim}' is not valid text"
    honest = {"Authorization": f"Bearer {oidc.sign(oidc.claims())}"}
    assert broker.client.post("/v1/credentials", json=write, headers=honest).status_code == 202
    broker.services.close()
