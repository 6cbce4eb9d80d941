"""A broker served over real HTTP (werkzeug in a thread) for the agent-side tests.

Backends are small fakes that issue credentials shaped like the real issuers' (AWS
access key, secret key and session token; Vault address, token and accessor; database
user and password), so the client, ``broker creds`` and the MCP server are exercised
against exactly the fields they read.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from broker_client import Backend, BrokerClient, Tier
from werkzeug.serving import make_server

from broker.app import create_app
from broker.approvals.service import Decision
from broker.errors import UpstreamUnavailable
from broker.identity.mint import mint_agent_token
from broker.issuers.base import IssuedCredential, Issuer, IssueRequest
from broker.services import Services, build_services
from broker.store.records import FreezeRecord, IssuedRecord, RequestRecord
from tests.fixtures.broker import FakeClock, test_settings

AGENT = "payments-copilot"


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


READ: tuple[str, str, Tier, Backend] = ("payments", "prod", "read", "aws")


@dataclass
class ShapedIssuer:
    """Issues made-up credentials with the real issuers' field names; counts its calls."""

    backend: str
    clock: Callable[[], float]
    vault_addr: str = "http://127.0.0.1:8200"
    lifetime: float | None = None  # override the requested duration (short-lived creds)
    calls: list[IssueRequest] = field(default_factory=list)
    secrets_issued: list[str] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)
    make_vault_token: Callable[[], tuple[str, str]] | None = None
    down: bool = False

    def issue(self, request: IssueRequest) -> IssuedCredential:
        if self.down:
            raise UpstreamUnavailable(f"{self.backend} is down", self.backend)
        self.calls.append(request)
        n = next(self.counter)
        if self.backend == "aws":
            public = {"access_key_id": f"ASIATEST{n:012d}", "region": request.region or ""}
            secret = {
                "secret_access_key": f"sk-{secrets.token_hex(16)}",
                "session_token": f"st-{secrets.token_hex(24)}",
            }
        elif self.backend == "vault":
            token, accessor = (
                self.make_vault_token()
                if self.make_vault_token
                else (f"hvs.{secrets.token_hex(12)}", f"acc-{n}")
            )
            public = {"vault_addr": self.vault_addr, "accessor": accessor}
            secret = {"token": token}
        else:
            public = {
                "username": f"v-agent-{n}",
                "lease_id": f"database/creds/x/{n}",
                "host": "127.0.0.1",
                "port": "5432",
                "database": "payments",
            }
            secret = {"password": f"pw-{secrets.token_hex(12)}"}
        self.secrets_issued.extend(secret.values())
        lifetime = self.lifetime if self.lifetime is not None else request.duration_seconds
        return IssuedCredential(self.backend, self.clock() + lifetime, secret, public)

    def revoke(self, record: IssuedRecord) -> None:
        pass

    def check(self) -> None:
        pass


@dataclass
class LiveBroker:
    """A broker answering on ``url``; ``requests`` counts the HTTP requests it served."""

    url: str
    services: Services
    clock: FakeClock
    issuers: dict[str, ShapedIssuer]
    requests: list[str]

    def token(self, agent: str = AGENT, ttl: int = 3600) -> str:
        local = self.services.settings.identity.local
        return mint_agent_token(self.services.keys, local, agent, ttl)

    def client(self, agent: str = AGENT, **kwargs: Any) -> BrokerClient:
        return BrokerClient(self.url, self.token(agent), **kwargs)

    def secrets(self) -> list[str]:
        return [s for issuer in self.issuers.values() for s in issuer.secrets_issued]

    # -- acting as the humans and operators ------------------------------------------

    def pending(self, timeout: float = 20.0) -> RequestRecord:
        """The newest open request, waiting for it to appear (another thread asks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.services.store.list_requests(statuses=["pending"], limit=1)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("no pending request appeared")

    def polls(self) -> int:
        return sum(1 for r in self.requests if r.startswith("GET /v1/requests/"))

    def decide_when_pending(
        self, decisions: list[tuple[str, Decision]], after_polls: int = 2
    ) -> threading.Thread:
        """In another thread: once a request is pending and the agent has sent
        ``after_polls`` status calls (the last one a long-poll now in progress), record
        ``decisions`` as the approvers would on the approval page."""
        start = self.polls()

        def act() -> None:
            record = self.pending()
            deadline = time.monotonic() + 20
            while self.polls() - start < after_polls and time.monotonic() < deadline:
                time.sleep(0.02)
            for approver, decision in decisions:
                self.services.approvals.decide(
                    record.id,
                    approver,
                    decision,
                    via="page",
                    reason="not now",
                )

        thread = threading.Thread(target=act, daemon=True)
        thread.start()
        return thread

    def freeze(self, agent: str = AGENT) -> None:
        self.services.store.add_freeze(
            FreezeRecord(
                kind="agent",
                target=f"agent:{agent}",
                reason="kill switch drill",
                created_by="admin:ops",
                created_at=self.clock(),
            )
        )
        self.services.guard.forget_freezes()


def start_live_broker(
    tmp_path: Path, real_issuers: Mapping[str, Issuer] | None = None
) -> tuple[LiveBroker, Callable[[], None]]:
    """Serve a broker on a free port (``real_issuers`` instead of the shaped fakes)."""
    clock = FakeClock()
    issuers = {name: ShapedIssuer(name, clock) for name in ("aws", "vault", "database")}
    services = build_services(test_settings(tmp_path), clock=clock, issuers=real_issuers or issuers)
    app = create_app(services=services)
    served: list[str] = []

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        served.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counting, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = LiveBroker(f"http://127.0.0.1:{server.server_port}", services, clock, issuers, served)

    def stop() -> None:
        server.shutdown()
        thread.join()
        services.close()

    return live, stop


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[LiveBroker]:
    made, stop = start_live_broker(tmp_path)
    yield made
    stop()
