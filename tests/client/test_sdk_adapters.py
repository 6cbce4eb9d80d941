"""BrokerClient.boto3_session: credentials that refresh through the broker near expiry."""

from __future__ import annotations

import pytest
from broker_client import BrokerClientError, Frozen

from tests.client.conftest import LiveBroker

INVOICE = "arn:aws:s3:::payments-prod-invoices/2026/11/batch.csv"


def test_boto3_credentials_refresh_through_the_broker_near_expiry(live: LiveBroker) -> None:
    client = live.client(clock=live.clock)  # botocore judges expiry by the broker's clock
    session = client.boto3_session("payments", "prod", "us-east-1")
    assert session.region_name == "us-east-1"
    credentials = session.get_credentials()
    assert credentials is not None and credentials.method == "custom-agent-credential-broker"
    first = credentials.get_frozen_credentials()
    assert (first.access_key or "").startswith("ASIATEST")
    live.clock.advance(600)
    assert credentials.get_frozen_credentials() == first  # 50 minutes left: no refresh
    assert len(live.issuers["aws"].calls) == 1
    live.clock.advance(3600 - 600 - 500)  # 500 s left: inside the 600 s advisory window
    second = credentials.get_frozen_credentials()
    assert second.access_key != first.access_key and second.secret_key != first.secret_key
    assert len(live.issuers["aws"].calls) == 2
    assert credentials.get_frozen_credentials() == second


def test_boto3_session_raises_refusals_at_once(live: LiveBroker) -> None:
    live.freeze()
    with pytest.raises(Frozen):
        live.client().boto3_session("payments", "prod", "us-east-1")
    assert live.issuers["aws"].calls == []


def test_boto3_session_for_a_write_tier_waits_for_approval(live: LiveBroker) -> None:
    live.decide_when_pending([("alice", "approve")])
    session = live.client().boto3_session(
        "payments",
        "prod",
        "us-east-1",
        tier="write",
        resources=[INVOICE],
        justification="re-upload the corrected November batch",
        wait_timeout=25,
    )
    credentials = session.get_credentials()
    assert credentials is not None
    assert (credentials.get_frozen_credentials().access_key or "").startswith("ASIATEST")
    [call] = live.issuers["aws"].calls
    assert call.tier == "write" and call.resources == (INVOICE,)


def test_vault_client_uses_the_issued_token(live: LiveBroker) -> None:
    client = live.client("ledger-maintainer")
    vault = client.vault_client("ledger", "prod")
    assert vault.url == "http://127.0.0.1:8200"
    assert vault.token == live.issuers["vault"].secrets_issued[-1]
    moved = client.vault_client("ledger", "staging", url="http://vault.internal:8200")
    assert moved.url == "http://vault.internal:8200"


def test_vault_client_needs_an_address(live: LiveBroker) -> None:
    live.issuers["vault"].vault_addr = ""
    with pytest.raises(BrokerClientError) as no_address:
        live.client("ledger-maintainer").vault_client("ledger", "prod")
    assert no_address.value.code == "invalid_argument"
