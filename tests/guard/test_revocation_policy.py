"""The revocation policy's merge: nothing denied is ever dropped, and it fits IAM's quota."""

from __future__ import annotations

import secrets

import pytest

from broker.guard.revocation_policy import (
    AGENT_KEY,
    REQUEST_KEY,
    ROLE_INLINE_MAX_CHARS,
    Denial,
    DoesNotFit,
    cutoff_for,
    merge,
    parse,
    present,
    size,
)
from broker.ids import new_request_id

NOW = 1_700_000_000.25
TIER_POLICY_CHARS = 2_500  # a tier role's own permissions, sharing the role's budget
BUDGET = ROLE_INLINE_MAX_CHARS - TIER_POLICY_CHARS


def agent(name: str, cutoff: int) -> Denial:
    return Denial(cutoff, AGENT_KEY, frozenset({name}))


def request(request_id: str, cutoff: int) -> Denial:
    return Denial(cutoff, REQUEST_KEY, frozenset({request_id}))


def denied(document: dict[str, object], source: str | None, request_id: str, issued: int) -> bool:
    """Would a session with this SourceIdentity and request tag, issued at ``issued``, be
    denied by the document? (Evaluated as IAM does: any statement matching denies.)"""
    denials, _ = parse(document)
    for d in denials:
        if issued >= d.cutoff:
            continue
        if d.key is None:
            return True
        value = source if d.key == AGENT_KEY else request_id
        if value in d.values:
            return True
    return False


def test_the_cutoff_is_never_earlier_than_the_revocation_and_covers_sessions_in_flight() -> None:
    assert cutoff_for(100.0, 0) == 100
    assert cutoff_for(100.01, 0) == 101  # a session issued at 100.00 has TokenIssueTime 100
    assert cutoff_for(100.5, 11.0) == 112


def test_an_unnarrowed_cutoff_absorbs_earlier_narrowed_ones() -> None:
    first = merge(None, agent("agent-a", 1_700_000_000), NOW, BUDGET)
    both = merge(first.document, Denial(1_700_000_010), NOW + 10, BUDGET)
    assert parse(both.document)[0] == [Denial(1_700_000_010)]
    assert both.collateral == ""
    # A later narrowed deny is kept beside it.
    later = merge(both.document, agent("agent-b", 1_700_000_020), NOW + 20, BUDGET)
    assert sorted(parse(later.document)[0], key=lambda d: d.cutoff) == [
        Denial(1_700_000_010),
        agent("agent-b", 1_700_000_020),
    ]


def test_statements_past_the_longest_session_are_pruned_and_foreign_ones_kept() -> None:
    foreign = {"Sid": "Theirs", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    old = {"Version": "2012-10-17", "Statement": [foreign]}
    first = merge(old, agent("agent-a", 1_700_000_000), NOW, BUDGET)
    later = merge(first.document, agent("agent-b", 1_700_050_000), NOW + 50_000, BUDGET)
    denials, kept = parse(later.document)
    assert denials == [agent("agent-b", 1_700_050_000)] and kept == [foreign]


def test_the_same_agent_revoked_twice_keeps_only_the_later_cutoff() -> None:
    first = merge(None, agent("agent-a", 1_700_000_000), NOW, BUDGET)
    second = merge(first.document, agent("agent-a", 1_700_000_100), NOW + 100, BUDGET)
    assert parse(second.document)[0] == [agent("agent-a", 1_700_000_100)]


def test_200_request_revocations_fit_losslessly() -> None:
    document: dict[str, object] | None = None
    revoked = []
    for i in range(200):
        request_id = new_request_id(NOW + i)
        revoked.append((request_id, int(NOW) + i))
        written = merge(document, request(request_id, int(NOW) + i + 12), NOW + i, BUDGET)
        assert written.collateral == ""  # request ids share the latest cut-off losslessly
        document = written.document
    assert document is not None and size(document) <= BUDGET
    for request_id, issued in revoked:
        assert denied(document, "agent-x", request_id, issued)
    # Another request's sessions are untouched, whenever they were issued.
    assert not denied(document, "agent-x", new_request_id(NOW), int(NOW))


def test_200_agent_revocations_coarsen_only_as_far_as_needed_and_never_deny_less() -> None:
    document: dict[str, object] | None = None
    revoked = []
    collateral = set()
    for i in range(200):
        name = f"agent-{secrets.token_hex(6)}"
        cutoff = int(NOW) + 2 * i + 12
        revoked.append((name, cutoff - 1))
        written = merge(document, agent(name, cutoff), NOW + 2 * i, BUDGET)
        collateral.add(written.collateral)
        document = written.document
        assert present(document, agent(name, cutoff))
    assert document is not None and size(document) <= BUDGET
    for name, issued in revoked:
        assert denied(document, name, "req", issued)
    # What it cost: agents revoked earlier share the latest agent cut-off; other agents
    # keep working.
    assert any("agents revoked before" in c for c in collateral)
    assert not denied(document, "agent-innocent", "req", int(NOW))


def test_when_nothing_narrowed_fits_one_unnarrowed_deny_remains() -> None:
    document: dict[str, object] | None = None
    tight = 1_500
    collateral = set()
    names = [f"agent-{i:04d}-{'x' * 40}" for i in range(200)]
    for i, name in enumerate(names):
        written = merge(document, agent(name, int(NOW) + i + 1), NOW, tight)
        document = written.document
        collateral.add(written.collateral)
        assert size(document) <= tight
    assert document is not None
    assert any(d.key is None for d in parse(document)[0])
    assert any("other agents' too" in c for c in collateral)
    for i, name in enumerate(names):
        assert denied(document, name, "req", int(NOW) + i)


def test_a_role_with_no_room_left_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(DoesNotFit):
        merge(None, agent("agent-a", int(NOW)), NOW, budget=100)
