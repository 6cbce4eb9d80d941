"""Impact before approval: measured on real moto and PostgreSQL, bounded by a deadline."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from broker.errors import UpstreamUnavailable
from broker.intent.errors import InvalidIntent
from broker.intent.impact import (
    Impact,
    ImpactKind,
    ImpactTarget,
    format_bytes,
    impact_targets,
    measure_impact,
)
from broker.intent.impact_aws import AwsImpactProbe, describe_change_set
from broker.intent.impact_postgres import PostgresImpactProbe
from broker.intent.model import AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.intent.verify import same_change_set
from broker.policy.iam_actions import iam_database
from broker.scopes.model import Backend
from tests.fixtures.moto import ACCOUNT, Moto
from tests.intent.support import TABLE, database_with, fixture, resource_change

REGION = "us-east-1"
TABLES = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"


def operations(ops: list[dict[str, Any]], backend: Backend = "aws") -> Intent:
    return parse_intent({"operations": ops}, backend, iam_database(), AwsTarget(ACCOUNT, REGION))


def probe(moto: Moto) -> AwsImpactProbe:
    return AwsImpactProbe(
        lambda service, region: moto.client(service, moto.admin_key, region), REGION
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# -- what to measure (pure) -------------------------------------------------------------------


def test_targets_are_the_destroyed_things() -> None:
    plan = fixture("plan_dynamodb_replace")
    intent = parse_intent(
        {"terraform_plan": plan}, "aws", iam_database(), AwsTarget("111111111111", REGION)
    )
    assert [(t.kind, t.subject) for t in impact_targets(intent)] == [("dynamodb_items", TABLE)]
    bucket = fixture("plan_s3_object_update")
    change = resource_change(bucket, "aws_s3_bucket.docs")["change"]
    change.update(actions=["delete"], after=None)
    intent = parse_intent(
        {"terraform_plan": bucket}, "aws", iam_database(), AwsTarget("111111111111", REGION)
    )
    assert ("s3_objects", "arn:aws:s3:::acme-prod-docs/*") in {
        (t.kind, t.subject) for t in impact_targets(intent)
    }


def test_a_change_set_s_removals_are_measured_too() -> None:
    intent = parse_intent(
        {"cloudformation_change_set": fixture("change_set_replace_table")},
        "aws",
        iam_database(),
        AwsTarget("111111111111", REGION),
    )
    assert [(t.kind, t.subject) for t in impact_targets(intent)] == [("dynamodb_items", TABLE)]


def test_nothing_destructive_means_nothing_to_measure() -> None:
    intent = operations([{"action": "s3:PutObject", "resource": "arn:aws:s3:::b/k"}])
    assert impact_targets(intent) == ()
    rows = operations([{"object": "billing.invoices", "privileges": ["TRUNCATE"]}], "database")
    assert [t.kind for t in impact_targets(rows)] == ["table_rows"]


def test_the_text_an_approver_reads() -> None:
    target = ImpactTarget("s3_objects", "arn:aws:s3:::b/logs/*", "s3:DeleteObject on ...")
    assert Impact(target, True, 1243, 4_200_000_000).text() == "deletes up to 1,243 objects, 4.2 GB"
    assert Impact(target, False, 5000, None, "counting stopped at the deadline").text() == (
        "impact unknown: at least 5,000 objects; counting stopped at the deadline"
    )
    assert [format_bytes(n) for n in (0, 999, 1000, 1_500_000, 10**13)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.5 MB",
        "10.0 TB",
    ]


# -- the deadline -------------------------------------------------------------------------------


class SlowProbe:
    kinds: frozenset[ImpactKind] = frozenset({"dynamodb_items"})

    def measure(self, target: ImpactTarget, deadline: float) -> Impact:
        time.sleep(5)
        return Impact(target, True, 1)


class BrokenProbe:
    kinds: frozenset[ImpactKind] = frozenset({"queue_messages"})

    def measure(self, target: ImpactTarget, deadline: float) -> Impact:
        raise RuntimeError("secret-looking detail that must not be shown")


def test_impact_is_unknown_past_the_deadline_and_never_raises() -> None:
    targets = [
        ImpactTarget("dynamodb_items", TABLE, "x"),
        ImpactTarget("queue_messages", "arn:aws:sqs:us-east-1:1:q", "y"),
        ImpactTarget("other", "arn:aws:rds:us-east-1:1:db:x", "z"),
    ]
    started = time.monotonic()
    slow, broken, other = measure_impact(targets, [SlowProbe(), BrokenProbe()], 0.3)
    assert time.monotonic() - started < 2
    assert slow.text() == "impact unknown: not measured within 0.3 s"
    assert broken.text() == "impact unknown: could not be measured (RuntimeError)"
    assert other.text() == "impact unknown: the broker does not measure this"


# -- real measurements --------------------------------------------------------------------------


def test_impact_on_a_prefix_holding_n_objects_shows_n(moto: Moto) -> None:
    s3 = moto.client("s3", moto.admin_key)
    bucket = unique("impact")
    s3.create_bucket(Bucket=bucket)
    inside = 1003  # more than one page of ListObjectsV2
    keys = [f"exports/2026/{n:05}.csv" for n in range(inside)]
    keys += ["exports/2025/old.csv", "exports/2026", "other/2026/x.csv"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 10), keys))
    intent = operations(
        [{"action": "s3:DeleteObject", "resource": f"arn:aws:s3:::{bucket}/exports/2026/*"}]
    )
    (impact,) = measure_impact(impact_targets(intent), [probe(moto)], 20)
    assert impact.measured and impact.count == inside and impact.size_bytes == inside * 10
    assert impact.text() == f"deletes up to {inside:,} objects, 10.0 kB"
    exact = operations(
        [{"action": "s3:DeleteObject", "resource": f"arn:aws:s3:::{bucket}/exports/2026"}]
    )
    assert measure_impact(impact_targets(exact), [probe(moto)], 20)[0].count == 1


def test_items_in_a_table_resources_in_a_stack_messages_in_a_queue(moto: Moto) -> None:
    table, stack, queue = unique("ledger"), unique("acme-prod-stack"), unique("events")
    dynamodb = moto.client("dynamodb", moto.admin_key)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(7):
        dynamodb.put_item(TableName=table, Item={"id": {"S": str(n)}})
    template = {
        "Resources": {
            "A": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": unique("a")}},
            "B": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": unique("b")}},
            "C": {"Type": "AWS::SNS::Topic"},
        }
    }
    cloudformation = moto.client("cloudformation", moto.admin_key)
    stack_id = cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps(template))[
        "StackId"
    ]
    sqs = moto.client("sqs", moto.admin_key)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    for n in range(4):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    intent = operations(
        [
            {
                "action": "dynamodb:DeleteTable",
                "resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}",
            },
            {"action": "cloudformation:DeleteStack", "resource": stack_id},
            {"action": "sqs:DeleteQueue", "resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"},
        ]
    )
    measured = {i.target.kind: i for i in measure_impact(impact_targets(intent), [probe(moto)], 20)}
    assert measured["dynamodb_items"].count == 7
    assert measured["stack_resources"].count == 3
    assert "2 AWS::SQS::Queue" in measured["stack_resources"].text()
    assert measured["queue_messages"].count == 4


def test_a_missing_resource_or_refused_read_is_impact_unknown(moto: Moto) -> None:
    intent = operations(
        [
            {
                "action": "dynamodb:DeleteTable",
                "resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{unique('gone')}",
            }
        ]
    )
    (impact,) = measure_impact(impact_targets(intent), [probe(moto)], 20)
    assert impact.text() == "impact unknown: AWS answered ResourceNotFoundException"


@pytest.fixture()
def rows_database() -> Iterator[str]:
    with database_with(
        "CREATE SCHEMA billing",
        "CREATE TABLE billing.invoices AS SELECT generate_series(1, 500) AS id",
        "CREATE TABLE billing.fresh (id int)",
        "ANALYZE billing.invoices",
    ) as url:
        yield url


def test_a_row_estimate_for_a_table(rows_database: str) -> None:
    postgres = PostgresImpactProbe(lambda: psycopg.connect(rows_database, connect_timeout=2))
    intent = operations(
        [
            {"object": "billing.invoices", "privileges": ["DELETE"]},
            {"object": "billing.fresh", "privileges": ["TRUNCATE"]},
        ],
        "database",
    )
    fresh, invoices = measure_impact(impact_targets(intent), [postgres], 10)
    assert invoices.count == 500 and invoices.text().startswith("deletes up to about 500 rows")
    assert fresh.text() == "impact unknown: never analyzed: PostgreSQL has no estimate yet"


# -- the change set AWS holds -------------------------------------------------------------------


def test_a_change_set_is_compared_with_the_one_aws_holds(moto: Moto) -> None:
    stack = unique("acme-prod-cs")
    cloudformation = moto.client("cloudformation", moto.admin_key)
    queue = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": unique("q")}}
    cloudformation.create_stack(
        StackName=stack,
        TemplateBody=json.dumps({"Resources": {"Q": queue, "T": {"Type": "AWS::SNS::Topic"}}}),
    )
    changed = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": unique("q2")}}
    change_set = cloudformation.create_change_set(
        StackName=stack,
        ChangeSetName="rename",
        TemplateBody=json.dumps({"Resources": {"Q": changed}}),
        ChangeSetType="UPDATE",
    )["Id"]
    client = lambda service, region: moto.client(service, moto.admin_key, region)  # noqa: E731
    described = describe_change_set(client, change_set)
    target = AwsTarget(ACCOUNT, REGION)
    intent = parse_intent({"cloudformation_change_set": described}, "aws", iam_database(), target)
    same_change_set(intent, described, target, iam_database())
    forged = json.loads(json.dumps(described))
    forged["Changes"] = [c for c in forged["Changes"] if c["ResourceChange"]["Action"] != "Remove"]
    innocent = parse_intent({"cloudformation_change_set": forged}, "aws", iam_database(), target)
    with pytest.raises(InvalidIntent, match="not the one this intent describes"):
        same_change_set(innocent, described, target, iam_database())
    with pytest.raises(UpstreamUnavailable):
        describe_change_set(client, change_set.replace("rename", "missing"))
