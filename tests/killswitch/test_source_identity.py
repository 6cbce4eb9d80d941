"""SourceIdentity names one agent, however long its principal, and the kill switch's per-agent
deny reaches exactly that agent. Enforced by the AWS stand-in (conditions evaluated)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.guard.revocation import RevokeTarget, denial_for
from broker.issuers.source_identity import legacy_source_identity, source_identity
from tests.fixtures.backends import Backends
from tests.killswitch.support import issue, s3_reads, shop_broker

# Two agents whose principals share their first 64 characters (SourceIdentity's limit).
PREFIX = "nightly-reconciliation-of-the-payments-ledger-against-the-bank-statements"
ONE, TWO = f"{PREFIX}-eu", f"{PREFIX}-us"


def test_long_principals_get_distinct_valid_source_identities() -> None:
    one, two = source_identity(f"agent:{ONE}"), source_identity(f"agent:{TWO}")
    assert one != two
    assert all(2 <= len(v) <= 64 for v in (one, two))
    assert one.startswith("agent-nightly-reconciliation")  # still readable in CloudTrail
    # Characters SourceIdentity cannot hold no longer merge principals either.
    assert source_identity("ci:repo:acme/app") != source_identity("ci:repo:acme-app")
    assert source_identity("agent:shop-bot") == "agent-shop-bot"  # short local names: as before


def test_the_deny_also_names_the_value_sessions_issued_before_got() -> None:
    """Sessions minted before the upgrade carry the old, cut value: the deny covers them."""
    denial = denial_for(RevokeTarget(agent=f"agent:{ONE}"), 1_800_000_000)
    assert denial.values == {
        source_identity(f"agent:{ONE}"),
        legacy_source_identity(f"agent:{ONE}"),
    }
    assert denial_for(RevokeTarget(agent="agent:shop-bot"), 1).values == {"agent-shop-bot"}


@pytest.mark.parametrize("revoked", [ONE, TWO])
def test_revoking_one_long_named_agent_leaves_the_other_working(
    tmp_path: Path, backends: Backends, revoked: str
) -> None:
    shop = shop_broker(tmp_path, backends)
    scope = next(shop.services.settings.scopes_dir.glob("*.yaml"))
    extra = "".join(f"  - subject: agent:{name}\n" for name in (ONE, TWO))
    scope.write_text(scope.read_text().replace("requesters:\n", f"requesters:\n{extra}", 1))
    assert shop.services.scopes.reload().applied
    sessions = {name: issue(shop, backends, name, "aws") for name in (ONE, TWO)}
    assert sessions[ONE]["source_identity"] != sessions[TWO]["source_identity"]
    assert all(s3_reads(backends, credentials) for credentials in sessions.values())

    report = shop.services.kill_switch.revoke(
        RevokeTarget(agent=f"agent:{revoked}"), "ops", "one of two"
    )
    assert report.ok, report.lines()
    kept = TWO if revoked == ONE else ONE
    assert not s3_reads(backends, sessions[revoked])
    assert s3_reads(backends, sessions[kept])
