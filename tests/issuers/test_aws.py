"""AWS credentials from the broker, used against the local AWS stand-in.

The stand-in evaluates as AWS does (docs/local-stack.md): the tier role's policy
intersected with the request's session policy, on the ARN of each resource a call touches,
for S3, DynamoDB and CloudFormation alike. So tier separation and per-request narrowing are
both proved by what the issued credentials can and cannot do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest
from botocore.utils import parse_timestamp

from broker.intake import parse_request, resolve
from broker.issuance import Issued
from broker.issuers.aws_sts import encode_body_once, utc_timestamp
from broker.policy.compiler import dumps, session_policy
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.moto import denied

AGENT = "shop-bot"


@pytest.fixture()
def shop(tmp_path: Path, backends: Backends) -> Broker:
    backends.apply(yes=True)
    admin_s3 = backends.admin("s3")
    admin_s3.create_bucket(Bucket=f"{backends.name}-prod-data")
    admin_s3.put_object(Bucket=f"{backends.name}-prod-data", Key="orders/1.json", Body=b"{}")
    backends.admin("dynamodb").create_table(
        TableName=f"{backends.name}-prod-orders",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    backends.admin("dynamodb").put_item(
        TableName=f"{backends.name}-prod-orders", Item={"id": {"S": "1"}}
    )
    backends.admin("cloudformation").create_stack(
        StackName=f"{backends.name}-prod-web",
        TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}),
    )
    return make_broker(tmp_path, real_issuers=backends.issuers)


def issue(broker: Broker, tier: str = "read", resources: tuple[str, ...] = ()) -> dict[str, str]:
    """Issue directly through the credential service (escalations are tested elsewhere)."""
    services = broker.services
    identity = services.verifier.verify(broker.token(AGENT))
    request = parse_request(
        {
            "service": broker_scope(broker),
            "environment": "prod",
            "region": "us-east-1",
            "tier": tier,
            "backend": "aws",
            "resources": list(resources),
        }
    )
    resolved = resolve(request, services.scopes.current, identity, services.iam)
    issued = services.issuance.issue(identity, resolved, None, use_cache=False)
    assert isinstance(issued, Issued)
    return dict(issued.credential.body())


def broker_scope(broker: Broker) -> str:
    return next(iter(broker.services.scopes.current.scopes))


def aws(backends: Backends, credentials: dict[str, str], service: str) -> Any:
    return backends.moto.agent_client(credentials, service)


def test_read_credentials_read_and_are_denied_every_change(
    shop: Broker, backends: Backends
) -> None:
    response = shop.post(
        "/v1/credentials",
        {
            "service": backends.name,
            "environment": "prod",
            "region": "us-east-1",
            "tier": "read",
            "backend": "aws",
        },
        agent=AGENT,
    )
    assert response.status_code == 200, response.json
    credentials = response.json["credentials"]
    assert credentials["access_key_id"].startswith("ASIA")
    assert credentials["source_identity"] == "agent-shop-bot"
    bucket, table = f"{backends.name}-prod-data", f"{backends.name}-prod-orders"
    s3, dynamodb = aws(backends, credentials, "s3"), aws(backends, credentials, "dynamodb")
    cloudformation = aws(backends, credentials, "cloudformation")
    assert s3.get_object(Bucket=bucket, Key="orders/1.json")["Body"].read() == b"{}"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["orders/1.json"]
    # The read tier's DynamoDB and CloudFormation grants work on the resources they name.
    assert dynamodb.get_item(TableName=table, Key={"id": {"S": "1"}})["Item"]["id"] == {"S": "1"}
    assert dynamodb.describe_table(TableName=table)["Table"]["TableName"] == table
    assert dynamodb.scan(TableName=table)["Count"] == 1
    [stack] = cloudformation.describe_stacks(StackName=f"{backends.name}-prod-web")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    # ... and nowhere else.
    assert denied(lambda: dynamodb.get_item(TableName=f"{table}-2", Key={"id": {"S": "1"}}))
    assert denied(lambda: cloudformation.describe_stacks(StackName="other-prod-web"))
    assert denied(lambda: dynamodb.put_item(TableName=table, Item={"id": {"S": "2"}}))
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="x", Body=b"x"))
    assert denied(lambda: s3.delete_object(Bucket=bucket, Key="orders/1.json"))
    assert denied(lambda: s3.delete_bucket(Bucket=bucket))
    assert denied(lambda: dynamodb.delete_table(TableName=table))
    assert denied(lambda: cloudformation.delete_stack(StackName=f"{backends.name}-prod-web"))
    # Nothing was destroyed.
    admin = backends.admin("s3")
    assert admin.get_object(Bucket=bucket, Key="orders/1.json")["Body"].read() == b"{}"


def test_write_credentials_write_but_cannot_delete(shop: Broker, backends: Backends) -> None:
    bucket = f"{backends.name}-prod-data"
    credentials = issue(shop, "write", (f"arn:aws:s3:::{bucket}/uploads/*",))
    s3 = aws(backends, credentials, "s3")
    s3.put_object(Bucket=bucket, Key="uploads/new.csv", Body=b"a,b")
    assert denied(lambda: s3.delete_object(Bucket=bucket, Key="uploads/new.csv"))
    assert denied(lambda: s3.delete_bucket(Bucket=bucket))


def test_a_write_is_narrowed_to_the_approved_resources(shop: Broker, backends: Backends) -> None:
    """Approved on <bucket>/2026/*: writes there, nowhere else, and reads nothing (the write
    tier's session names only what was asked, though its role could do more)."""
    bucket = f"{backends.name}-prod-data"
    credentials = issue(shop, "write", (f"arn:aws:s3:::{bucket}/2026/*",))
    s3 = aws(backends, credentials, "s3")
    s3.put_object(Bucket=bucket, Key="2026/11/invoice.pdf", Body=b"%PDF")
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="2025/x", Body=b"x"))
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="orders/1.json", Body=b"x"))
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="orders/1.json"))
    dynamodb = aws(backends, credentials, "dynamodb")
    table = f"{backends.name}-prod-orders"
    assert denied(lambda: dynamodb.put_item(TableName=table, Item={"id": {"S": "2"}}))
    admin = backends.admin("s3")
    assert admin.get_object(Bucket=bucket, Key="orders/1.json")["Body"].read() == b"{}"


def test_a_dynamodb_write_on_its_table_succeeds(shop: Broker, backends: Backends) -> None:
    table = f"{backends.name}-prod-orders"
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    dynamodb = aws(backends, issue(shop, "write", (arn,)), "dynamodb")
    dynamodb.put_item(TableName=table, Item={"id": {"S": "2"}})
    admin = backends.admin("dynamodb")
    assert admin.get_item(TableName=table, Key={"id": {"S": "2"}})["Item"] == {"id": {"S": "2"}}
    assert denied(lambda: dynamodb.delete_item(TableName=table, Key={"id": {"S": "2"}}))
    assert denied(lambda: dynamodb.put_item(TableName=f"{table}-2", Item={"id": {"S": "2"}}))


def test_session_policy_sent_to_sts_is_the_compiled_one(shop: Broker, backends: Backends) -> None:
    sent: list[dict[str, Any]] = []
    # botocore's own event hook on the client the issuer uses: what it sends, as sent.
    backends.sts.client("sts", "us-east-1").meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: sent.append(dict(params))
    )
    resource = f"arn:aws:s3:::{backends.name}-prod-data/orders/*"
    issue(shop, "read", (resource,))
    [params] = sent
    scope = shop.services.scopes.current.scopes[backends.name]
    expected = session_policy(
        scope, scope.environments["prod"], "us-east-1", "read", shop.services.iam, (resource,)
    )
    assert params["Policy"] == dumps(expected)
    assert json.loads(params["Policy"])["Statement"][0]["Resource"] == [resource]
    assert params["RoleArn"] == f"arn:aws:iam::123456789012:role/broker/{backends.name}-prod-read"
    assert params["SourceIdentity"] == "agent-shop-bot"
    assert params["DurationSeconds"] == 3600
    tags = {t["Key"]: t["Value"] for t in params["Tags"]}
    assert tags["broker:service"] == backends.name and tags["broker:tier"] == "read"
    assert tags["broker:request-id"].startswith("req_")


def test_issued_record_keeps_correlation_ids_only(shop: Broker, backends: Backends) -> None:
    credentials = issue(shop)
    [record] = shop.services.store.active_issued(shop.clock(), agent_subject="agent:shop-bot")
    assert record.access_key_id == credentials["access_key_id"]
    assert record.source_identity == "agent-shop-bot"
    stored = json.dumps(record.__dict__, default=str)
    assert credentials["secret_access_key"] not in stored
    assert credentials["session_token"] not in stored


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-05T08:20:00Z",
        "2026-12-05T08:20:00.123Z",
        "2026-12-05T08:20:00+01:00",
        "2026-12-05T08:20:00",
        "1700000000",
        1700000000,
        "Sat, 05 Dec 2026 08:20:00 GMT",
    ],
)
def test_aws_timestamps_are_read_as_botocore_reads_them(value: Any) -> None:
    assert utc_timestamp(value) == parse_timestamp(value)


def test_a_query_body_is_encoded_once_into_what_botocore_would_send() -> None:
    policy = dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]})
    data = {"Action": "AssumeRole", "Policy": policy, "RoleSessionName": "a b+c"}
    fresh = AWSRequest(method="POST", url="https://sts.amazonaws.com/", data=dict(data))
    encoded = AWSRequest(method="POST", url="https://sts.amazonaws.com/", data=dict(data))

    encode_body_once(encoded)

    assert isinstance(encoded.data, str)
    assert encoded.prepare().body == fresh.prepare().body
    assert encoded.body == fresh.body  # what SigV4 hashes
