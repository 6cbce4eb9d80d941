"""Measuring impact in AWS with the read tier: S3 objects, DynamoDB items, stack resources,
SQS messages. Also reads a change set back, so the broker can compare it with the intent.

``client(service, region)`` makes boto3 clients with read credentials; give them short
timeouts and few retries, since every call here races a deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from broker.errors import UpstreamUnavailable
from broker.intent.arns import arn_account, arn_region
from broker.intent.errors import InvalidIntent
from broker.intent.impact import Impact, ImpactKind, ImpactTarget
from broker.policy.globs import covers

ClientFactory = Callable[[str, str], Any]
MAX_CHANGE_SET_PAGES = 50


class AwsImpactProbe:
    """An :class:`~broker.intent.impact.ImpactProbe` for AWS resources."""

    kinds: frozenset[ImpactKind] = frozenset(
        {"s3_objects", "dynamodb_items", "stack_resources", "queue_messages"}
    )

    def __init__(self, client: ClientFactory, default_region: str) -> None:
        self._client = client
        self._default_region = default_region

    def measure(self, target: ImpactTarget, deadline: float) -> Impact:
        try:
            if target.kind == "s3_objects":
                return self._s3(target, deadline)
            if target.kind == "dynamodb_items":
                return self._dynamodb(target)
            if target.kind == "stack_resources":
                return self._stack(target, deadline)
            return self._queue(target)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "error")
            return Impact(target, False, reason=f"AWS answered {code}")

    def _region_of(self, arn: str) -> str:
        return arn_region(arn) or self._default_region

    def _s3(self, target: ImpactTarget, deadline: float) -> Impact:
        """Objects whose keys the resource's key pattern matches, counted page by page."""
        bucket, _, pattern = target.subject.split(":::", 1)[1].partition("/")
        literal = len(pattern)
        for wildcard in "*?":
            if wildcard in pattern:
                literal = min(literal, pattern.index(wildcard))
        s3 = self._client("s3", self._default_region)
        count = size = 0
        token: str | None = None
        while True:
            if time.monotonic() >= deadline:
                return Impact(target, False, count, size, "counting stopped at the deadline")
            arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": pattern[:literal]}
            if token:
                arguments["ContinuationToken"] = token
            page = s3.list_objects_v2(**arguments)
            for item in page.get("Contents", []):
                if covers(pattern, item["Key"]):  # IAM's own matching: what the grant allows
                    count += 1
                    size += int(item.get("Size", 0))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return Impact(target, True, count, size)

    def _dynamodb(self, target: ImpactTarget) -> Impact:
        name = target.subject.rsplit("/", 1)[-1]
        dynamodb = self._client("dynamodb", self._region_of(target.subject))
        table = dynamodb.describe_table(TableName=name)["Table"]
        return Impact(
            target,
            True,
            int(table.get("ItemCount", 0)),
            int(table.get("TableSizeBytes", 0)),
            "DynamoDB's count, refreshed about every six hours",
        )

    def _stack(self, target: ImpactTarget, deadline: float) -> Impact:
        parts = target.subject.split(":stack/", 1)[1].split("/")
        stack = target.subject if parts[-1] not in ("*", "") and len(parts) > 1 else parts[0]
        cloudformation = self._client("cloudformation", self._region_of(target.subject))
        types: Counter[str] = Counter()
        token: str | None = None
        while True:
            if time.monotonic() >= deadline:
                return Impact(
                    target, False, sum(types.values()), None, "counting stopped at the deadline"
                )
            arguments: dict[str, Any] = {"StackName": stack}
            if token:
                arguments["NextToken"] = token
            page = cloudformation.list_stack_resources(**arguments)
            for summary in page.get("StackResourceSummaries", []):
                if summary.get("ResourceStatus") != "DELETE_COMPLETE":
                    types[summary.get("ResourceType", "?")] += 1
            token = page.get("NextToken")
            if not token:
                common = ", ".join(f"{n} {t}" for t, n in types.most_common(3))
                return Impact(target, True, sum(types.values()), None, common)

    def _queue(self, target: ImpactTarget) -> Impact:
        name = target.subject.rsplit(":", 1)[-1]
        sqs = self._client("sqs", self._region_of(target.subject))
        owner = arn_account(target.subject)
        url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=owner)["QueueUrl"]
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        count = sum(int(attributes.get(n, 0)) for n in names)
        return Impact(target, True, count, None, "SQS's approximate count")


def describe_change_set(
    client: ClientFactory, change_set_id: str, stack: str | None = None
) -> dict[str, Any]:
    """DescribeChangeSet, every page joined, as the intent's JSON would hold it.

    With ``stack``, the change set is named as ExecuteChangeSet names it (its name and the
    stack): what holds that name *now*, which may be another change set than the id's.

    Raises :class:`InvalidIntent` when no change set holds the name (or id) any more, and
    :class:`UpstreamUnavailable` when AWS cannot be asked: unlike impact, checking that the
    agent described the real change set must succeed before anything is issued.
    """
    cloudformation = client("cloudformation", arn_region(change_set_id))
    named: dict[str, str] = {"ChangeSetName": change_set_id}
    if stack is not None:
        named = {"ChangeSetName": change_set_id.split(":changeSet/", 1)[-1].split("/")[0]}
        named["StackName"] = stack
    try:
        page = cloudformation.describe_change_set(**named)
        changes = list(page.get("Changes", []))
        for _ in range(MAX_CHANGE_SET_PAGES):
            token = page.get("NextToken")
            if not token:
                break
            page = cloudformation.describe_change_set(**named, NextToken=token)
            changes += page.get("Changes", [])
        else:
            raise UpstreamUnavailable("the change set has too many pages to read", "aws")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ChangeSetNotFound":
            raise InvalidIntent(
                f"change set {named['ChangeSetName']} no longer exists: describe the change "
                "set you mean to execute and request again",
                "intent.cloudformation_change_set",
            ) from e
        raise UpstreamUnavailable(
            f"could not read change set {change_set_id} ({type(e).__name__})", "aws"
        ) from e
    except BotoCoreError as e:
        raise UpstreamUnavailable(
            f"could not read change set {change_set_id} ({type(e).__name__})", "aws"
        ) from e
    described = {k: v for k, v in page.items() if k not in ("ResponseMetadata", "NextToken")}
    described["Changes"] = changes
    result: dict[str, Any] = json.loads(json.dumps(described, default=str))  # datetimes
    return result
