"""The AWS stand-in as a server: real boto3 calls, decided as AWS would decide them.

Each test would pass against plain moto only if moto enforced what the test names; most
do not (session policies, resources outside S3, conditions, trust conditions, quotas).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import broker.devstack.standin.calls as calls
from broker.devstack.servers import Moto
from broker.policy.iam_actions import iam_database
from tests.fixtures.moto import ACCOUNT, BROKER_USER, assume_role, denied

ALL = "*"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = ALL, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def error_of(call: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return dict(caught.value.response["Error"])


@pytest.fixture()
def bucket(moto: Moto) -> str:
    name = f"invoices-{secrets.token_hex(4)}"
    s3 = moto.client("s3", moto.admin_key)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="README.txt", Body=b"read me")
    s3.put_object(Bucket=name, Key="2025/x", Body=b"old")
    return name


@pytest.fixture()
def table(moto: Moto) -> str:
    name = f"ledger-{secrets.token_hex(4)}"
    dynamodb = moto.client("dynamodb", moto.admin_key)
    for each in (name, f"{name}-other"):
        dynamodb.create_table(
            TableName=each,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": "id", "AttributeType": "S"},
                {"AttributeName": "day", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-day",
                    "KeySchema": [{"AttributeName": "day", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        dynamodb.put_item(TableName=each, Item={"id": {"S": "1"}, "day": {"S": "mon"}})
    return name


def test_a_session_policy_narrows_the_role_it_is_passed_with(moto: Moto, bucket: str) -> None:
    session = assume_role(
        moto,
        doc(allow("s3:*")),
        doc(allow("s3:PutObject", f"arn:aws:s3:::{bucket}/2026/*")),
    )
    s3 = moto.agent_client(session, "s3")
    s3.put_object(Bucket=bucket, Key="2026/11/a.pdf", Body=b"new")
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="2025/x", Body=b"overwritten"))
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="README.txt"))
    assert denied(lambda: s3.delete_object(Bucket=bucket, Key="2025/x"))
    admin = moto.client("s3", moto.admin_key)
    assert admin.get_object(Bucket=bucket, Key="2025/x")["Body"].read() == b"old"


def test_dynamodb_is_authorized_on_table_and_index_arns(moto: Moto, table: str) -> None:
    arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{table}"
    session = assume_role(
        moto,
        doc(allow("dynamodb:*")),
        doc(allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"], arn)),
    )
    dynamodb = moto.agent_client(session, "dynamodb")
    key = {"id": {"S": "1"}}
    assert dynamodb.get_item(TableName=table, Key=key)["Item"]["day"] == {"S": "mon"}
    dynamodb.put_item(TableName=table, Item={"id": {"S": "2"}, "day": {"S": "tue"}})
    dynamodb.query(
        TableName=table,
        KeyConditionExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": "1"}},
    )
    refusal = error_of(lambda: dynamodb.get_item(TableName=f"{table}-other", Key=key))
    assert refusal["Code"] == "AccessDeniedException"
    assert refusal["Message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{_role_of(session, moto)}/test-session "
        f"is not authorized to perform: dynamodb:GetItem on resource: {arn}-other "
        "because no session policy allows the dynamodb:GetItem action"
    )
    # The index is a resource of its own: the table's ARN does not cover it.
    assert denied(
        lambda: dynamodb.query(
            TableName=table,
            IndexName="by-day",
            KeyConditionExpression="#d = :d",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":d": {"S": "mon"}},
        )
    )
    # A batch is authorized on every table it names.
    assert denied(
        lambda: dynamodb.batch_get_item(
            RequestItems={table: {"Keys": [key]}, f"{table}-other": {"Keys": [key]}}
        )
    )
    assert denied(lambda: dynamodb.delete_table(TableName=table))


def _role_of(session: dict[str, str], moto: Moto) -> str:
    arn = str(moto.agent_client(session, "sts").get_caller_identity()["Arn"])
    return arn.split("/")[1]


def test_cloudformation_is_authorized_on_stack_arns(moto: Moto) -> None:
    prefix = f"acme-{secrets.token_hex(3)}"
    stacks = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{prefix}-prod-*/*"
    template = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
    moto.client("cloudformation", moto.admin_key).create_stack(
        StackName=f"{prefix}-staging-web", TemplateBody=template
    )
    session = assume_role(
        moto,
        doc(
            allow(
                [
                    "cloudformation:CreateStack",
                    "cloudformation:DescribeStacks",
                    "cloudformation:DeleteStack",
                ],
                stacks,
            ),
            allow(["sns:*"]),
        ),
    )
    cloudformation = moto.agent_client(session, "cloudformation")
    cloudformation.create_stack(StackName=f"{prefix}-prod-web", TemplateBody=template)
    [described] = cloudformation.describe_stacks(StackName=f"{prefix}-prod-web")["Stacks"]
    assert described["StackName"] == f"{prefix}-prod-web"
    assert denied(lambda: cloudformation.delete_stack(StackName=f"{prefix}-staging-web"))
    assert denied(lambda: cloudformation.list_stacks())  # needs Resource "*"
    assert denied(lambda: cloudformation.describe_stacks())  # every stack: "*" again
    cloudformation.delete_stack(StackName=f"{prefix}-prod-web")


def test_rds_snapshot_needs_both_the_instance_and_the_snapshot(moto: Moto) -> None:
    name = f"payments-{secrets.token_hex(3)}"
    rds = moto.client("rds", moto.admin_key)
    for instance in (name, f"{name}-replica"):
        rds.create_db_instance(
            DBInstanceIdentifier=instance,
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            MasterUsername="admin",
            MasterUserPassword="not-a-secret-1",
            AllocatedStorage=20,
        )
    base = f"arn:aws:rds:us-east-1:{ACCOUNT}"
    session = assume_role(
        moto,
        doc(allow("rds:CreateDBSnapshot", [f"{base}:db:{name}", f"{base}:snapshot:{name}-*"])),
    )
    agent = moto.agent_client(session, "rds")
    agent.create_db_snapshot(DBInstanceIdentifier=name, DBSnapshotIdentifier=f"{name}-s1")
    assert denied(
        lambda: agent.create_db_snapshot(
            DBInstanceIdentifier=f"{name}-replica", DBSnapshotIdentifier=f"{name}-s2"
        )
    )
    assert denied(
        lambda: agent.create_db_snapshot(DBInstanceIdentifier=name, DBSnapshotIdentifier="other")
    )


def _revocation(cutoff: float, **narrowing: str) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "DateLessThan": {
            "aws:TokenIssueTime": dt.datetime.fromtimestamp(cutoff, dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        }
    }
    if narrowing:
        condition["StringEquals"] = narrowing
    return doc({"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": condition})


def _wait_until(instant: float) -> None:
    while time.time() < instant:
        time.sleep(min(0.2, instant - time.time()))


def test_a_conditional_deny_revokes_older_sessions_only(moto: Moto, bucket: str) -> None:
    name = f"role-{secrets.token_hex(4)}"
    old = assume_role(moto, doc(allow("s3:GetObject")), role_name=name)
    s3_old = moto.agent_client(old, "s3")
    assert s3_old.get_object(Bucket=bucket, Key="README.txt")["Body"].read() == b"read me"
    cutoff = float(int(time.time()) + 1)  # the next whole second: covers the session above
    moto.client("iam", moto.admin_key).put_role_policy(
        RoleName=name, PolicyName="revoked", PolicyDocument=json.dumps(_revocation(cutoff))
    )
    assert denied(lambda: s3_old.get_object(Bucket=bucket, Key="README.txt"))
    _wait_until(cutoff)  # sessions issued from the cut-off second on are not covered
    new = moto.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/broker/{name}",
        RoleSessionName="after-revoke",
        SourceIdentity="agent-test",
    )["Credentials"]
    s3_new = moto.agent_client(
        {
            "aws_access_key_id": new["AccessKeyId"],
            "aws_secret_access_key": new["SecretAccessKey"],
            "aws_session_token": new["SessionToken"],
        },
        "s3",
    )
    assert s3_new.get_object(Bucket=bucket, Key="README.txt")["Body"].read() == b"read me"
    assert denied(lambda: s3_old.get_object(Bucket=bucket, Key="README.txt"))


@pytest.mark.parametrize(
    ("narrowing", "revoked"),
    [
        ({"aws:SourceIdentity": "agent-copilot"}, True),
        ({"aws:SourceIdentity": "agent-other"}, False),
        ({"aws:PrincipalTag/broker:request-id": "req_1"}, True),
        ({"aws:PrincipalTag/broker:request-id": "req_2"}, False),
    ],
)
def test_a_revocation_narrowed_to_an_agent_or_a_request(
    moto: Moto, bucket: str, narrowing: dict[str, str], revoked: bool
) -> None:
    name = f"role-{secrets.token_hex(4)}"
    session = assume_role(
        moto,
        doc(allow("s3:GetObject")),
        source_identity="agent-copilot",
        tags=[("broker:request-id", "req_1")],
        role_name=name,
    )
    moto.client("iam", moto.admin_key).put_role_policy(
        RoleName=name,
        PolicyName="revoked",
        PolicyDocument=json.dumps(_revocation(time.time() + 60, **narrowing)),
    )
    s3 = moto.agent_client(session, "s3")
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="README.txt")) is revoked


def test_assume_role_follows_the_trust_policy(moto: Moto) -> None:
    sts = moto.client("sts")
    missing = error_of(
        lambda: sts.assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/broker/not-created-yet",
            RoleSessionName="s1",
        )
    )
    assert missing["Code"] == "AccessDenied"
    name = f"role-{secrets.token_hex(4)}"
    iam = moto.client("iam", moto.admin_key)
    trust = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": BROKER_USER},
            "Action": "sts:AssumeRole",
            "Condition": {"StringLike": {"sts:SourceIdentity": "*"}},
        }
    )
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    arn = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    # The trust requires a SourceIdentity, and setting one (or tags) needs its own grant.
    assert denied(lambda: sts.assume_role(RoleArn=arn, RoleSessionName="s1"))
    assert denied(
        lambda: sts.assume_role(RoleArn=arn, RoleSessionName="s1", SourceIdentity="agent-x")
    )
    trust["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": BROKER_USER}, "Action": "sts:SetSourceIdentity"}
    )
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    sts.assume_role(RoleArn=arn, RoleSessionName="s1", SourceIdentity="agent-x")
    assert denied(
        lambda: sts.assume_role(
            RoleArn=arn,
            RoleSessionName="s1",
            SourceIdentity="agent-x",
            Tags=[{"Key": "broker:tier", "Value": "read"}],
        )
    )


def test_sts_refuses_what_aws_refuses(moto: Moto) -> None:
    name = f"role-{secrets.token_hex(4)}"
    assume_role(moto, doc(allow("s3:GetObject")), role_name=name)
    sts = moto.client("sts")
    arn = f"arn:aws:iam::{ACCOUNT}:role/broker/{name}"
    long_policy = doc(allow("s3:GetObject", [f"arn:aws:s3:::bucket-{i:04}/*" for i in range(80)]))
    assert len(json.dumps(long_policy)) > 2048
    too_long = error_of(
        lambda: sts.assume_role(
            RoleArn=arn,
            RoleSessionName="s1",
            SourceIdentity="agent-x",
            Policy=json.dumps(long_policy),
        )
    )
    assert too_long["Code"] == "ValidationError" and "2048" in too_long["Message"]
    too_long_lived = error_of(
        lambda: sts.assume_role(
            RoleArn=arn, RoleSessionName="s1", SourceIdentity="agent-x", DurationSeconds=7200
        )
    )
    assert too_long_lived["Code"] == "ValidationError"
    assert "MaxSessionDuration" in too_long_lived["Message"]


def test_iam_refuses_inline_policies_over_its_quota(moto: Moto) -> None:
    name = f"role-{secrets.token_hex(4)}"
    assume_role(moto, doc(allow("s3:GetObject")), role_name=name)
    iam = moto.client("iam", moto.admin_key)
    big = doc(allow("s3:GetObject", [f"arn:aws:s3:::bucket-{i:05}/*" for i in range(260)]))
    size = len(json.dumps(big).replace(" ", ""))
    assert 6144 < size < 10240 < 2 * size  # one fits a role, two do not, nor one managed
    iam.put_role_policy(RoleName=name, PolicyName="first", PolicyDocument=json.dumps(big))
    refused = error_of(
        lambda: iam.put_role_policy(
            RoleName=name, PolicyName="second", PolicyDocument=json.dumps(big)
        )
    )
    assert refused["Code"] == "LimitExceeded"
    # Replacing a policy counts its new size, not old plus new.
    iam.put_role_policy(RoleName=name, PolicyName="first", PolicyDocument=json.dumps(big))
    managed = error_of(
        lambda: iam.create_policy(PolicyName=f"{name}-managed", PolicyDocument=json.dumps(big))
    )
    assert managed["Code"] == "LimitExceeded"


def test_batch_delete_and_copy_are_authorized_per_object(moto: Moto, bucket: str) -> None:
    session = assume_role(
        moto,
        doc(
            allow(
                ["s3:DeleteObject", "s3:PutObject", "s3:GetObject"], f"arn:aws:s3:::{bucket}/2026/*"
            )
        ),
    )
    admin = moto.client("s3", moto.admin_key)
    admin.put_object(Bucket=bucket, Key="2026/a", Body=b"a")
    s3 = moto.agent_client(session, "s3")
    outcome = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "2026/a"}, {"Key": "2025/x"}]}
    )
    assert outcome.get("Deleted", []) == []
    assert {e["Key"] for e in outcome["Errors"]} == {"2026/a", "2025/x"}
    assert admin.get_object(Bucket=bucket, Key="2025/x")["Body"].read() == b"old"
    # Copying reads the source: README.txt is outside what the session may read.
    assert denied(
        lambda: s3.copy_object(
            Bucket=bucket, Key="2026/copy", CopySource={"Bucket": bucket, "Key": "README.txt"}
        )
    )
    s3.copy_object(Bucket=bucket, Key="2026/copy", CopySource={"Bucket": bucket, "Key": "2026/a"})


def test_every_s3_operation_moto_authorizes_is_named_as_an_iam_action() -> None:
    """moto names some S3 operations by API name; the stand-in must ask IAM for the action
    AWS authorizes (ListObjectsV2 is s3:ListBucket). Read from moto's own source."""
    import moto.s3.responses as s3_responses

    source = Path(s3_responses.__file__).read_text()
    names = set(re.findall(r'self\.data\["Action"\] = "(\w+)"', source))
    names |= set(re.findall(r':\s*"(\w+)"', _action_map_text(source)))
    iam = iam_database()
    unknown = sorted(n for n in names if not iam.expand("s3:" + calls.S3_IAM_ACTIONS.get(n, n)))
    assert not unknown


def _action_map_text(source: str) -> str:
    start = source.index("ACTION_MAP = {")
    return source[start : source.index("\n}\n", start)]
