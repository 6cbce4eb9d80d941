"""Grants: their stored form and hash, and what is left of one when the scope changes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.policy.compiler import login_role_sql, vault_policy
from broker.policy.grant import DatabaseGrant, Grant, grant_from_json
from broker.policy.narrowing import intersect_database, intersect_hcl, narrowed
from tests.policy.test_compiler import example

BUCKET = "arn:aws:s3:::shop-prod-data"
REGION = {"StringEquals": {"aws:RequestedRegion": ["us-east-1"]}}


def aws(*statements: dict[str, object], duration: int = 1800) -> Grant:
    policy = {"Version": "2012-10-17", "Statement": list(statements)}
    return Grant("aws", "write", duration, "arn:aws:iam::1:role/w", policy)


def allow(
    actions: list[str], resources: list[str], condition: object = REGION
) -> dict[str, object]:
    statement: dict[str, object] = {"Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def test_a_grant_round_trips_through_its_canonical_form_and_hash() -> None:
    grant = aws(allow(["s3:PutObject"], [f"{BUCKET}/a"]))
    again = grant_from_json(grant.canonical_json())
    assert again == grant and again.sha256 == grant.sha256 and len(grant.short_hash) == 12
    assert replace(grant, duration_seconds=900).sha256 != grant.sha256
    with pytest.raises(ValueError):
        grant_from_json('{"backend": "aws"}')
    with pytest.raises(ValueError):
        grant_from_json(grant.canonical_json().replace(":", ": ", 1))  # not canonical


def test_an_unchanged_scope_gives_the_stored_grant_itself() -> None:
    grant = aws(allow(["s3:PutObject"], [f"{BUCKET}/a"]))
    assert narrowed(grant, grant) is grant


def test_a_widened_tier_adds_nothing_to_what_was_approved() -> None:
    stored = aws(allow(["s3:PutObject"], [f"{BUCKET}/a"]))
    wider = aws(allow(["s3:DeleteObject", "s3:PutObject"], [f"{BUCKET}/*"]))
    result = narrowed(stored, wider)
    assert result.session_policy == stored.session_policy


def test_a_narrowed_tier_takes_away_what_it_no_longer_grants() -> None:
    stored = aws(allow(["s3:DeleteObject", "s3:PutObject"], [f"{BUCKET}/a", f"{BUCKET}/b"]))
    current = aws(allow(["s3:PutObject"], [f"{BUCKET}/a"]), duration=900)
    result = narrowed(stored, current)
    assert result.session_policy is not None
    assert result.session_policy["Statement"] == [allow(["s3:PutObject"], [f"{BUCKET}/a"])]
    assert result.duration_seconds == 900


def test_conditions_of_both_must_hold() -> None:
    stored = aws(allow(["s3:PutObject"], [f"{BUCKET}/a"]))
    elsewhere = aws(
        allow(
            ["s3:PutObject"],
            [f"{BUCKET}/a"],
            {"StringEquals": {"aws:RequestedRegion": ["eu-west-1"]}},
        )
    )
    assert narrowed(stored, elsewhere).empty
    unconditional = aws(allow(["s3:PutObject"], [f"{BUCKET}/*"], None))
    assert narrowed(stored, unconditional).session_policy == stored.session_policy


def test_statements_it_cannot_read_are_left_out() -> None:
    stored = aws(
        allow(["s3:PutObject"], [f"{BUCKET}/a"]),
        {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"},
    )
    everything = aws(allow(["s3:*", "iam:*", "ec2:*"], ["*"], None))
    result = narrowed(stored, everything)
    assert result.session_policy is not None
    assert result.session_policy["Statement"] == [allow(["s3:PutObject"], [f"{BUCKET}/a"])]


def test_vault_paths_keep_only_capabilities_the_current_policy_also_grants() -> None:
    scope = example("ledger")
    env = scope.environments["prod"]
    stored = vault_policy(scope, env, "delete", ["ledger/prod/api-key"])
    current = vault_policy(scope, env, "write")
    assert stored is not None and current is not None
    kept = intersect_hcl(stored, current)
    data = 'path "secret/data/ledger/prod/api-key" {\n  capabilities = ["create", "read", "update"]'
    assert data in kept
    assert "secret/destroy/" not in kept and '"delete"' not in kept
    assert intersect_hcl(stored, stored) == stored


def test_database_grants_keep_only_privileges_still_granted() -> None:
    creation, revocation = login_role_sql(
        [("SELECT, INSERT, UPDATE, DELETE, TRUNCATE", "shop.orders"), ("SELECT", "shop.returns")],
        "shop_owner",
    )
    stored = DatabaseGrant("db", "shop", creation, revocation)
    current_sql, _ = login_role_sql([("SELECT, INSERT, UPDATE", "shop.*")])
    result = intersect_database(stored, DatabaseGrant("db", "shop", current_sql, revocation))
    assert result.creation_statements[0] == creation[0]
    assert result.creation_statements[1:] == (
        'GRANT USAGE ON SCHEMA "shop" TO "{{name}}";',
        'GRANT SELECT, INSERT, UPDATE ON TABLE "shop"."orders" TO "{{name}}";',
        'GRANT SELECT ON TABLE "shop"."returns" TO "{{name}}";',
    )
    assert intersect_database(stored, stored) == stored
