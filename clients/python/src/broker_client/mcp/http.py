"""The streamable-HTTP transport, protected by the agent's broker token.

Every HTTP request carries ``Authorization: Bearer <agent token>``, the same token the
agent gives the broker. The server asks the broker who the token names (``GET
/v1/scopes``; the answer is remembered for :data:`VERIFIED_SECONDS`, by the token's
SHA-256) and then acts as that agent: its tasks are visible to it alone. It publishes
OAuth 2.0 Protected Resource Metadata (RFC 9728) at
``/.well-known/oauth-protected-resource/mcp``, and a 401 names it in ``WWW-Authenticate``,
so a host can discover where tokens come from.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from starlette.applications import Starlette

from broker_client.client import BrokerClient
from broker_client.errors import BrokerClientError
from broker_client.mcp.server import BrokerMcp
from broker_client.mcp.tools import BrokerTools
from broker_client.options import token_identity

VERIFIED_SECONDS = 30.0
PATH = "/mcp"


class BrokerTokenVerifier:
    """Accepts a bearer token the broker accepts (an agent token); never stores it."""

    def __init__(self, broker_url: str, timeout: float) -> None:
        self.broker_url = broker_url
        self.timeout = timeout
        self._verified: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._verified.get(digest)
        if hit is not None and hit[0] > now:
            return AccessToken(token=token, client_id=hit[1], scopes=[], subject=hit[1])
        client = BrokerClient(self.broker_url, token, timeout=self.timeout)
        try:
            listing = await anyio.to_thread.run_sync(client.scopes)
        except BrokerClientError:
            return None
        agent = str(listing.get("agent") or "agent")
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if v[0] > now}
            self._verified[digest] = (now + VERIFIED_SECONDS, agent)
        return AccessToken(token=token, client_id=agent, scopes=[], subject=agent)


class PerToken:
    """The tools of the agent whose verified token this HTTP request carries."""

    def __init__(
        self, make_tools: Callable[[BrokerClient], BrokerTools], broker_url: str, timeout: float
    ) -> None:
        self.make_tools = make_tools
        self.broker_url = broker_url
        self.timeout = timeout
        self._tools: dict[str, BrokerTools] = {}
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, BrokerTools]:
        access = get_access_token()
        if access is None:  # the auth middleware lets nothing unauthenticated through
            raise RuntimeError("no verified token on this request")
        owner = token_identity(access.token)
        digest = hashlib.sha256(access.token.encode()).hexdigest()
        with self._lock:
            tools = self._tools.get(digest)
            if tools is None:
                client = BrokerClient(self.broker_url, access.token, timeout=self.timeout)
                tools = self._tools[digest] = self.make_tools(client)
        return owner, tools


def http_app(
    make_tools: Callable[[BrokerClient], BrokerTools],
    broker_url: str,
    public_url: str,
    authorization_server: str,
    timeout: float,
    host: str,
) -> Starlette:
    """The ASGI app serving MCP at ``/mcp`` behind the agent-token check."""
    mcp = BrokerMcp(PerToken(make_tools, broker_url, timeout))
    auth = AuthSettings(
        issuer_url=authorization_server,  # type: ignore[arg-type]
        resource_server_url=public_url.rstrip("/") + PATH,  # type: ignore[arg-type]
        validate_token_resource=False,  # the broker checks the token's audience itself
    )
    return mcp.build().streamable_http_app(
        streamable_http_path=PATH,
        auth=auth,
        token_verifier=BrokerTokenVerifier(broker_url, timeout),
        host=host,
    )
