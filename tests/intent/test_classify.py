"""What counts as destroying, for each backend."""

from __future__ import annotations

from broker.intent.classify import describe, destructions, summarize
from broker.intent.model import AwsTarget
from broker.intent.parse import parse_intent
from broker.policy.iam_actions import iam_database
from broker.scopes.model import VaultKv

KV2 = VaultKv(mount="secret", paths=("app/*",), version=2)


def test_vault_deletes_and_destroys_count_with_the_mount_known() -> None:
    intent = parse_intent(
        {
            "operations": [
                {"path": "secret/data/app/a", "capabilities": ["update"]},
                {"path": "secret/data/app/b", "capabilities": ["delete"]},
                {"path": "secret/destroy/app/c", "capabilities": ["update"]},
                {"path": "secret/delete/app/d", "capabilities": ["update"]},
            ]
        },
        "vault",
        iam_database(),
    )
    reasons = {d.subject.rsplit(" ", 1)[-1]: d.reason for d in destructions(intent, KV2)}
    assert reasons == {
        "secret/data/app/b": "deletes the secret",
        "secret/destroy/app/c": "destroys secret versions",
        "secret/delete/app/d": "deletes secret versions",
    }
    assert summarize(intent, KV2).destructive == 3
    # Without the mount, only the delete capability is known to destroy.
    assert summarize(intent).destructive == 1


def test_aws_destruction_reasons_come_from_the_broker_s_rule() -> None:
    intent = parse_intent(
        {
            "operations": [
                {"action": "s3:PutBucketVersioning", "resource": "arn:aws:s3:::b"},
                {"action": "s3:PutObject", "resource": "arn:aws:s3:::b/k"},
            ]
        },
        "aws",
        iam_database(),
        AwsTarget("111111111111", "us-east-1"),
    )
    lines = describe(intent)
    assert lines == [
        "destroys: s3:PutBucketVersioning on arn:aws:s3:::b",
        "s3:PutObject on arn:aws:s3:::b/k",
    ]
    assert destructions(intent)[0].reason == "suspending versioning makes later deletions permanent"
