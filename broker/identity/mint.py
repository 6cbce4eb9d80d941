"""Mint agent tokens signed by the broker's own key (``broker token mint``)."""

from __future__ import annotations

import re
import secrets
import time

import jwt

from broker.config import LocalIssuer
from broker.errors import BadRequest
from broker.identity.model import AGENT_PREFIX
from broker.identity.verifier import LOCAL_ALGORITHM
from broker.keys import BrokerKeys

AGENT_SUBJECT_PREFIX = AGENT_PREFIX
AGENT_NAME = re.compile("[A-Za-z0-9_-]{1,128}")  # ASCII: the name ends up in ARNs and logs


def mint_agent_token(
    keys: BrokerKeys,
    local: LocalIssuer,
    agent: str,
    ttl_seconds: int,
    now: float | None = None,
    extra_claims: dict[str, str] | None = None,
) -> str:
    """A JWT naming ``agent:<agent>`` as subject, valid for ``ttl_seconds``.

    ``agent`` is the name (``reports-bot``) or the subject as scopes, ``revoke`` and
    ``unfreeze`` write it (``agent:reports-bot``).
    """
    agent = agent.removeprefix(AGENT_SUBJECT_PREFIX)
    if not local.enabled:
        raise BadRequest("broker-minted tokens are disabled (identity.local.enabled: false)")
    if not 60 <= ttl_seconds <= local.max_ttl_seconds:
        raise BadRequest(f"ttl must be between 60 s and {local.max_ttl_seconds} s", "ttl")
    if not AGENT_NAME.fullmatch(agent):
        raise BadRequest(
            "agent names are letters, digits, '-' and '_' (optionally written agent:NAME)",
            "agent",
        )
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        **(extra_claims or {}),
        "iss": local.issuer,
        "aud": local.audience,
        "sub": AGENT_SUBJECT_PREFIX + agent,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(
        claims,
        keys.agent_signing_key,
        algorithm=LOCAL_ALGORITHM,
        headers={"kid": keys.agent_key_id},
    )
