"""The broker's own Vault token, against a real OpenBao: logins (AppRole, Kubernetes, JWT),
renewal, a new login near the maximum TTL or after a revocation, and a given token's end.

The Kubernetes login goes through OpenBao's kubernetes auth method, which asks a
Kubernetes API server to review the service-account token: a local HTTP server answers
that TokenReview call as the API server does. The broker issues agent tokens with the
deploy's runtime policy (deploy/vault/credential-broker-runtime.hcl) and nothing more.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import hvac
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.config import VaultAuthSettings
from broker.issuers.vault_common import VaultCaller, make_client
from broker.issuers.vault_login import LoginAdapter, TokenKeeper, VaultLogin
from broker.issuers.vault_token import VaultTokenIssuer
from tests.fixtures.backends import FAST_RETRY, Backends
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.pki import self_signed_ca
from tests.fixtures.secret_scan import Watcher

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_POLICY = "credential-broker-runtime"
AGENT = "shop-bot"


@dataclass
class Setup:
    broker: Broker
    client: hvac.Client
    backends: Backends

    @property
    def keeper(self) -> TokenKeeper:
        adapter = self.client.adapter
        assert isinstance(adapter, LoginAdapter)
        return adapter.keeper

    def ask(self) -> tuple[int, dict[str, Any]]:
        """A read request that reaches Vault (never answered from the broker's cache)."""
        self.broker.services.cache.clear()
        body = {"service": self.backends.name, "environment": "prod", "tier": "read"}
        response = self.broker.post("/v1/credentials", {**body, "backend": "vault"}, AGENT)
        return response.status_code, response.json


def broker_with(tmp_path: Path, backends: Backends, client: hvac.Client) -> Setup:
    """A broker whose Vault issuer uses ``client`` (and nothing else)."""
    backends.apply(yes=True)
    root = backends.vault_client
    root.sys.create_or_update_policy(
        RUNTIME_POLICY, (ROOT / "deploy/vault/credential-broker-runtime.hcl").read_text()
    )
    issuer = VaultTokenIssuer(VaultCaller("vault", client, FAST_RETRY), backends.bao.url)
    broker = make_broker(tmp_path, real_issuers={"vault": issuer})
    return Setup(broker, client, backends)


def approle(
    root: hvac.Client, policy: str = RUNTIME_POLICY, **token_settings: str
) -> VaultAuthSettings:
    """An AppRole mount of its own holding a role with ``policy``; its login settings."""
    mount = f"approle-{secrets.token_hex(3)}"
    root.sys.enable_auth_method("approle", path=mount)
    root.auth.approle.create_or_update_approle(
        "broker",
        token_policies=[policy],
        token_no_default_policy=True,
        mount_point=mount,
        **(token_settings or {"token_ttl": "1h", "token_max_ttl": "2h"}),
    )
    role_id = root.auth.approle.read_role_id("broker", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("broker", mount_point=mount)["data"][
        "secret_id"
    ]
    return VaultAuthSettings(method="approle", mount=mount, role_id=role_id, secret_id=secret_id)


def login_client(backends: Backends, auth: VaultAuthSettings) -> hvac.Client:
    return make_client(backends.bao.url, None, login=VaultLogin(auth))


@pytest.fixture(autouse=True)
def _keepers_are_watched(secret_scan: Watcher) -> Iterator[None]:
    """The broker's own tokens (every login's) join the suite's secret scan, and each
    keeper's background renewal stops with its test."""
    seen: list[str] = []
    keepers: list[TokenKeeper] = []
    adopt = TokenKeeper._adopt

    def watching(self: TokenKeeper, *args: Any) -> None:
        adopt(self, *args)
        seen.append(str(self._token))
        keepers.append(self)

    TokenKeeper._adopt = watching  # type: ignore[method-assign]
    yield
    TokenKeeper._adopt = adopt  # type: ignore[method-assign]
    for keeper in keepers:
        keeper.close()
    for token in seen:
        secret_scan.add_secret(token, "the broker's own Vault token")


def test_approle_renews_its_token_and_logs_in_again_near_the_maximum_ttl(
    tmp_path: Path, backends: Backends, secret_scan: Watcher
) -> None:
    auth = approle(backends.vault_client, token_ttl="2s", token_max_ttl="4s")
    secret_scan.add_secret(str(auth.secret_id), "the AppRole secret id")
    setup = broker_with(tmp_path, backends, login_client(backends, auth))
    tokens = set()
    started = time.monotonic()
    while time.monotonic() - started < 5.5:  # past the maximum TTL of the first token
        status, body = setup.ask()
        assert status == 200, body
        tokens.add(setup.client.token)
        time.sleep(0.25)
    keeper = setup.keeper
    assert keeper.renewals >= 1  # at two thirds of the 2 s lease
    assert keeper.logins >= 2  # a fresh login instead of a lease cut short by the 4 s cap
    assert len(tokens) == keeper.logins


def test_a_periodic_token_is_renewed_for_as_long_as_the_broker_runs(
    tmp_path: Path, backends: Backends
) -> None:
    """What deploy/vault/setup.sh gives the broker: no maximum TTL, so no new login (the
    database leases it issued stay tied to a token that lives on)."""
    auth = approle(backends.vault_client, token_period="2s")
    setup = broker_with(tmp_path, backends, login_client(backends, auth))
    started = time.monotonic()
    while time.monotonic() - started < 3.0:  # past the first period
        status, body = setup.ask()
        assert status == 200, body
        time.sleep(0.25)
    assert setup.keeper.renewals >= 1 and setup.keeper.logins == 1


def test_a_token_revoked_behind_the_brokers_back_is_replaced_at_the_next_call(
    tmp_path: Path, backends: Backends
) -> None:
    setup = broker_with(tmp_path, backends, login_client(backends, approle(backends.vault_client)))
    assert setup.ask()[0] == 200
    first = setup.client.token
    assert first and first != backends.bao.root_token  # the login's own token, not root
    backends.vault_client.auth.token.revoke(first)
    status, body = setup.ask()
    assert status == 200, body
    assert setup.client.token != first and setup.keeper.logins == 2


def test_a_real_denial_is_not_taken_for_a_revoked_token(tmp_path: Path, backends: Backends) -> None:
    """A policy that does not allow the call: 503 naming the refusal, no new login (the
    token's own lookup, which the broker's policy must allow, tells the two apart)."""
    root = backends.vault_client
    lookup_only = 'path "auth/token/lookup-self" { capabilities = ["read"] }'
    root.sys.create_or_update_policy("broker-test-lookup-only", lookup_only)
    auth = approle(root, policy="broker-test-lookup-only")
    setup = broker_with(tmp_path, backends, login_client(backends, auth))
    status, body = setup.ask()
    assert status == 503 and body["error"] == "upstream_unavailable", body
    assert "Forbidden" in body["message"]
    assert setup.keeper.logins == 1


def test_a_refused_login_is_a_503_naming_it_and_readiness_says_so(
    tmp_path: Path, backends: Backends, secret_scan: Watcher
) -> None:
    auth = approle(backends.vault_client)
    wrong = "0" * 8 + auth.secret_id[8:]  # type: ignore[index]
    secret_scan.add_secret(wrong, "a wrong AppRole secret id")
    bad = VaultAuthSettings(
        method="approle", mount=auth.mount, role_id=auth.role_id, secret_id=wrong
    )
    setup = broker_with(tmp_path, backends, login_client(backends, bad))
    status, body = setup.ask()
    assert status == 503, body
    assert f"Vault refused the broker's login at auth/{auth.mount}" in body["message"]
    assert wrong not in json.dumps(body)
    ready = setup.broker.client.get("/readyz")
    assert ready.status_code == 503
    assert f"auth/{auth.mount}" in ready.json["checks"]["vault"]


# -- Kubernetes ------------------------------------------------------------------------


@dataclass
class KubernetesApi:
    """The TokenReview endpoint of a Kubernetes API server, for OpenBao to call."""

    valid: set[str] = field(default_factory=set)
    reviewed: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"


NAMESPACE, ACCOUNT, UID = "credential-broker", "credential-broker", "5f0c-4a1e"


@pytest.fixture()
def kubernetes_api() -> Iterator[KubernetesApi]:
    api = KubernetesApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            token = review["spec"]["token"]
            api.reviewed.append(token)
            status: dict[str, Any] = {"authenticated": token in api.valid}
            if status["authenticated"]:
                status["user"] = {
                    "username": f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}",
                    "uid": UID,
                    "groups": ["system:serviceaccounts"],
                }
            answer = json.dumps(
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}
            ).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    api.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=api.server.serve_forever, daemon=True).start()
    yield api
    api.server.shutdown()
    api.server.server_close()


def service_account_token(api: KubernetesApi) -> str:
    """A projected service-account token as kubelet writes it (the API server vouches)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {
        "iss": "https://kubernetes.default.svc",
        "sub": f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}",
        "kubernetes.io/serviceaccount/namespace": NAMESPACE,
        "kubernetes.io/serviceaccount/service-account.name": ACCOUNT,
        "kubernetes.io/serviceaccount/service-account.uid": UID,
        "nonce": secrets.token_hex(8),
    }
    token = f"{part({'alg': 'RS256', 'kid': 'k1'})}.{part(claims)}.{secrets.token_urlsafe(32)}"
    api.valid.add(token)
    return token


def test_kubernetes_login_reads_the_service_account_token_again_at_every_login(
    tmp_path: Path, backends: Backends, kubernetes_api: KubernetesApi, secret_scan: Watcher
) -> None:
    root = backends.vault_client
    mount = f"kubernetes-{secrets.token_hex(3)}"
    root.sys.enable_auth_method("kubernetes", path=mount)
    root.auth.kubernetes.configure(
        kubernetes_host=kubernetes_api.url,
        kubernetes_ca_cert=self_signed_ca("cluster-ca"),
        disable_local_ca_jwt=True,
        mount_point=mount,
    )
    root.auth.kubernetes.create_role(
        "credential-broker",
        bound_service_account_names=[ACCOUNT],
        bound_service_account_namespaces=[NAMESPACE],
        policies=[RUNTIME_POLICY],
        mount_point=mount,
    )
    token_file = tmp_path / "serviceaccount" / "token"
    token_file.parent.mkdir()
    first = service_account_token(kubernetes_api)
    token_file.write_text(first)
    auth = VaultAuthSettings(
        method="kubernetes", mount=mount, role="credential-broker", jwt_path=token_file
    )
    setup = broker_with(tmp_path, backends, login_client(backends, auth))
    assert setup.ask()[0] == 200
    # kubelet rotates the projected token; the next login must present the new one.
    second = service_account_token(kubernetes_api)
    token_file.write_text(second)
    assert setup.client.token != backends.bao.root_token
    root.auth.token.revoke(setup.client.token)
    status, body = setup.ask()
    assert status == 200, body
    assert kubernetes_api.reviewed == [first, second]
    for value in (first, second):
        secret_scan.add_secret(value, "a service-account token")


def test_a_missing_service_account_token_is_a_clear_503(tmp_path: Path, backends: Backends) -> None:
    missing = tmp_path / "no-such-token"
    auth = VaultAuthSettings(method="kubernetes", role="credential-broker", jwt_path=missing)
    setup = broker_with(tmp_path, backends, login_client(backends, auth))
    status, body = setup.ask()
    assert status == 503, body
    assert f"cannot read the JWT to log in with at {missing}" in body["message"]


# -- JWT -------------------------------------------------------------------------------


def test_jwt_login_with_the_issuers_public_key(
    tmp_path: Path, backends: Backends, secret_scan: Watcher
) -> None:
    """Any workload identity (a CI job's OIDC token, SPIFFE JWT-SVID...) through the jwt
    auth method: OpenBao checks the signature against the issuer's public key."""
    root = backends.vault_client
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mount = f"jwt-{secrets.token_hex(3)}"
    root.sys.enable_auth_method("jwt", path=mount)
    root.auth.jwt.configure(
        jwt_validation_pubkeys=[public.decode()], bound_issuer="https://ci.example", path=mount
    )
    root.auth.jwt.create_role(
        "credential-broker",
        role_type="jwt",
        user_claim="sub",
        bound_audiences=["vault"],
        allowed_redirect_uris=[],
        token_policies=[RUNTIME_POLICY],
        token_no_default_policy=True,
        path=mount,
    )
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "https://ci.example",
            "aud": "vault",
            "sub": "credential-broker",
            "iat": now,
            "exp": now + 600,
        },
        key,
        algorithm="ES256",
    )
    secret_scan.add_secret(token, "the broker's workload JWT")
    token_file = tmp_path / "workload.jwt"
    token_file.write_text(token + "\n")
    auth = VaultAuthSettings(
        method="jwt", mount=mount, role="credential-broker", jwt_path=token_file
    )
    setup = broker_with(tmp_path, backends, login_client(backends, auth))
    status, body = setup.ask()
    assert status == 200, body
    assert setup.keeper.logins == 1


# -- a given token (BROKER_VAULT_TOKEN) ------------------------------------------------


def test_a_given_token_is_renewed_while_idle_until_its_maximum_ttl_then_its_end_is_clear(
    tmp_path: Path, backends: Backends, secret_scan: Watcher
) -> None:
    """A given token cannot log in again: left alone past its TTL (no call to renew it on
    the way) it must still be renewed, and once Vault will not renew it any more every call
    says so, naming BROKER_VAULT_TOKEN."""
    root = backends.vault_client
    given = root.auth.token.create_orphan(
        policies=[RUNTIME_POLICY],
        no_default_policy=True,
        ttl="2s",
        explicit_max_ttl="5s",
        renewable=True,
    )["auth"]["client_token"]
    secret_scan.add_secret(given, "a given broker token")
    created = time.monotonic()
    setup = broker_with(tmp_path, backends, make_client(backends.bao.url, given))
    assert setup.ask()[0] == 200
    time.sleep(3.0)  # idle, past its 2 s TTL
    status, body = setup.ask()
    assert status == 200, body
    assert setup.keeper.renewals >= 1 and setup.keeper.logins == 1
    # Past its 5 s maximum Vault refuses it (on a busy machine its expiry may lag a little).
    time.sleep(max(0.0, 5.5 - (time.monotonic() - created)))
    status, body = setup.ask()
    while status == 200 and time.monotonic() - created < 15:
        time.sleep(0.5)
        status, body = setup.ask()
    assert status == 503, body
    assert "BROKER_VAULT_TOKEN" in body["message"]
    assert given not in json.dumps(body)
