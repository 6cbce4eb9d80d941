"""An external issuer that is slow, dead or redirecting cannot take the broker down with it.

Tokens arrive unauthenticated: a flood of them naming an issuer whose key set hangs must
cost one fetch and one thread, while the rest of the API (health, other agents) answers.
Tested against `broker serve` (gunicorn, one worker of 8 threads) and real sockets.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import yaml

from broker.config import load_settings
from broker.devstack.processes import free_port
from broker.errors import InvalidFileError, Unauthenticated
from broker.identity.jwks import JwksCache
from broker.identity.mint import mint_agent_token
from broker.keys import load_keys
from tests.fixtures.agent_issuer import KID, RSA_KEY, OidcProvider
from tests.fixtures.broker import READ_PAYMENTS, make_broker
from tests.fixtures.serve import broker_serve

ISSUER = "https://slow-ci.example.test"


class HangingServer:
    """Accepts connections and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.connections: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/jwks"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture()
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


def _token(subject: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "credential-broker", "sub": subject, "iat": now}
    return jwt.encode({**claims, "exp": now + 600}, RSA_KEY, "RS256", headers={"kid": KID})


def test_a_hanging_key_set_holds_one_thread_while_the_api_answers(
    tmp_path: Path, hanging: HangingServer
) -> None:
    made = make_broker(tmp_path)
    made.services.close()
    port = free_port()
    config = made.write_config(tmp_path / "broker.yaml")
    data = yaml.safe_load(config.read_text())
    data.update(
        listen=f"127.0.0.1:{port}",
        workers=1,
        threads=8,
        identity={
            "oidc": [
                {
                    "name": "slow",
                    "issuer": ISSUER,
                    "audience": "credential-broker",
                    "jwks_url": hanging.url,
                }
            ]
        },
    )
    config.write_text(yaml.safe_dump(data))
    settings = load_settings(config)
    local = mint_agent_token(
        load_keys(settings.state_dir), settings.identity.local, "payments-copilot", 600
    )
    server, url = broker_serve(config, port, tmp_path / "serve.log")
    try:

        def unauthenticated(n: int) -> tuple[int, float]:
            started = time.monotonic()
            answer = requests.post(
                f"{url}/v1/credentials",
                json=READ_PAYMENTS,
                headers={"Authorization": f"Bearer {_token(f'flood-{n}')}"},
                timeout=30,
            )
            return answer.status_code, time.monotonic() - started

        with ThreadPoolExecutor(max_workers=50) as pool:
            flood = [pool.submit(unauthenticated, n) for n in range(50)]
            time.sleep(0.5)  # the flood is in: one fetch hangs, the rest were answered
            started = time.monotonic()
            health = requests.get(f"{url}/healthz", timeout=10)
            scopes = requests.get(
                f"{url}/v1/scopes", headers={"Authorization": f"Bearer {local}"}, timeout=10
            )
            elapsed = time.monotonic() - started
            answers = [f.result() for f in flood]
        assert health.status_code == 200 and scopes.status_code == 200
        assert elapsed < 2, f"the API waited {elapsed:.1f} s behind the hanging issuer"
        assert {status for status, _ in answers} == {401}
        quick = [took for _, took in answers if took < 2]
        assert len(quick) >= 49, sorted(took for _, took in answers)
        assert len(hanging.connections) == 1  # one fetch for 50 tokens: rate-limited
    finally:
        server.stop()


# -- the cache alone ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def keys_server() -> Iterator[dict[str, Any]]:
    """A JWKS server whose answers the test sets: a body, a status, or a redirect."""
    state: dict[str, Any] = {"hits": 0, "status": 200, "location": None}
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    state["body"] = json.dumps({"keys": [{**public, "kid": KID, "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state["hits"] += 1
            if state["location"] and self.path == "/jwks":
                self.send_response(302)
                self.send_header("Location", state["location"])
                self.end_headers()
                return
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    state["url"] = f"http://127.0.0.1:{port}/jwks"
    state["localhost"] = f"http://localhost:{port}"
    yield state
    server.shutdown()
    server.server_close()


def test_the_first_fetch_is_rate_limited_too(keys_server: dict[str, Any]) -> None:
    """An issuer that is down is asked once per min_refresh, not once per token."""
    clock = Clock()
    cache = JwksCache(min_refresh_seconds=30, clock=clock)
    keys_server["status"] = 503
    for _ in range(20):
        with pytest.raises(Unauthenticated, match="keys are unavailable"):
            cache.key(keys_server["url"], KID)
    assert keys_server["hits"] == 1
    keys_server["status"] = 200
    clock.now += 31
    assert cache.key(keys_server["url"], KID).key_id == KID
    assert keys_server["hits"] == 2


def test_stale_keys_are_dropped(keys_server: dict[str, Any]) -> None:
    """Keys the issuer may have withdrawn while unreachable do not stay valid for ever."""
    clock = Clock()
    cache = JwksCache(ttl_seconds=600, min_refresh_seconds=30, max_stale_seconds=3600, clock=clock)
    assert cache.key(keys_server["url"], KID).key_id == KID
    keys_server["status"] = 503
    clock.now += 1800  # past the TTL: the refresh fails, the keys held still serve
    assert cache.key(keys_server["url"], KID).key_id == KID
    clock.now += 1900  # an hour without a successful refresh: fail closed
    with pytest.raises(Unauthenticated, match="keys are stale"):
        cache.key(keys_server["url"], KID)
    keys_server["status"] = 200
    clock.now += 31
    assert cache.key(keys_server["url"], KID).key_id == KID


def test_a_redirect_to_another_origin_is_not_followed(keys_server: dict[str, Any]) -> None:
    keys_server["location"] = f"{keys_server['localhost']}/elsewhere"
    with pytest.raises(Unauthenticated, match="keys are unreachable"):
        JwksCache().key(keys_server["url"], KID)
    keys_server["location"] = "/moved"  # the same origin: followed
    assert JwksCache().key(keys_server["url"], KID).key_id == KID


def test_a_key_set_is_fetched_over_https(tmp_path: Path, oidc: OidcProvider) -> None:
    config = tmp_path / "broker.yaml"
    entry = {"name": "ci", "issuer": oidc.issuer, "audience": "a"}
    for jwks_url, ok in [
        ("http://keys.example.com/jwks", False),
        ("https://keys.example.com/jwks", True),
        ("http://localhost:8000/jwks", True),
    ]:
        config.write_text(yaml.safe_dump({"identity": {"oidc": [{**entry, "jwks_url": jwks_url}]}}))
        if ok:
            assert load_settings(config, environ={}).identity.oidc[0].jwks_url == jwks_url
        else:
            with pytest.raises(InvalidFileError, match="jwks_url must use https"):
                load_settings(config, environ={})
