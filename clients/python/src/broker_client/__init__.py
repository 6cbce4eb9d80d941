"""The agent side of the agent credential broker: a typed HTTP client, SDK adapters,
``broker-creds`` (AWS ``credential_process`` and env helper) and the MCP server.

Depends on ``requests`` only; ``[aws]`` adds boto3, ``[vault]`` hvac, ``[mcp]`` the MCP SDK.
Nothing is imported here beyond the standard library and this package's own modules.
"""

from __future__ import annotations

from broker_client.client import MAX_WAIT_SECONDS, BrokerClient
from broker_client.errors import (
    ApprovalPending,
    BrokerClientError,
    BrokerUnreachable,
    Denied,
    Expired,
    Frozen,
    NotReady,
    Revoked,
)
from broker_client.results import (
    PUBLIC_FIELDS,
    Ask,
    Backend,
    IssuanceState,
    Issued,
    PendingRequest,
    RequestState,
    ScopeList,
    Tier,
    format_seconds,
    refresh_windows,
)

__version__ = "0.1.0"

__all__ = [
    "MAX_WAIT_SECONDS",
    "PUBLIC_FIELDS",
    "ApprovalPending",
    "Ask",
    "Backend",
    "BrokerClient",
    "BrokerClientError",
    "BrokerUnreachable",
    "Denied",
    "Expired",
    "Frozen",
    "IssuanceState",
    "Issued",
    "NotReady",
    "PendingRequest",
    "RequestState",
    "Revoked",
    "ScopeList",
    "Tier",
    "__version__",
    "format_seconds",
    "refresh_windows",
]
