"""What an API call asks IAM for: the (action, resource ARN) pairs AWS authorizes.

AWS authorizes a call against the ARN of each resource it touches, built from the call's
parameters, and some calls need more than one permission (CopyObject reads its source;
CreateDBSnapshot names an instance and a snapshot; a DynamoDB transaction needs the item
action on each table). Every pair must be allowed. A resource the stand-in cannot name is
``None`` (see statements.py for how that is judged); a call on no particular resource
(ListStacks, ListTables) is ``"*"``.

Services modelled: S3, DynamoDB, CloudFormation, RDS, IAM, STS. Others get ``None``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

ALL = "*"

# moto names some S3 operations by API name; IAM authorizes them under these actions.
S3_IAM_ACTIONS = {
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListBuckets": "ListAllMyBuckets",
    "CopyObject": "PutObject",
    "UploadPartCopy": "PutObject",
    "DeleteObjects": "DeleteObject",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeleteBucketTagging": "PutBucketTagging",
    "GetBucketInventoryConfiguration": "GetInventoryConfiguration",
    "ListBucketInventoryConfigurations": "GetInventoryConfiguration",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
    "GetBucketReplication": "GetReplicationConfiguration",
    "GetBucketAccelerateConfiguration": "GetAccelerateConfiguration",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "ListParts": "ListMultipartUploadParts",
    "CreateMultipartUpload": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "SelectObject": "GetObject",
    "SelectObjectContent": "GetObject",
}
_TRANSACT_WRITE = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_RDS_IDENTIFIERS = {
    "DBInstanceIdentifier": "db",
    "DBSnapshotIdentifier": "snapshot",
    "SourceDBSnapshotIdentifier": "snapshot",
    "TargetDBSnapshotIdentifier": "snapshot",
    "DBClusterIdentifier": "cluster",
    "DBClusterSnapshotIdentifier": "cluster-snapshot",
    "DBSubnetGroupName": "subgrp",
    "DBParameterGroupName": "pg",
}


class Directory(Protocol):
    """What the stand-in looks up in moto's state to name a resource."""

    def stack_arn(self, region: str, account: str, name: str) -> str | None: ...

    def change_set_stack(self, region: str, account: str, change_set: str) -> str | None: ...

    def role_arn(self, account: str, name: str) -> str | None: ...

    def user_arn(self, account: str, name: str) -> str | None: ...


@dataclass(frozen=True)
class Call:
    """One API call as the stand-in sees it."""

    service: str  # the signing name (s3, dynamodb, cloudformation, rds, iam, sts)
    operation: str  # the API or moto's operation name
    region: str
    account: str
    params: Mapping[str, Any] = field(default_factory=dict)  # query params or JSON body
    s3_resource: str = ALL  # moto's bucket or object ARN for S3 calls
    headers: Mapping[str, str] = field(default_factory=dict)
    s3_delete_keys: tuple[str, ...] = ()  # the keys of an S3 multi-object delete


@dataclass(frozen=True)
class Check:
    action: str  # service:Action
    resource: str | None


def checks_for(call: Call, directory: Directory) -> list[Check]:
    """Every (action, resource) pair that must be allowed for ``call`` to proceed."""
    builder = _BUILDERS.get(call.service)
    if builder is None:
        return [Check(f"{call.service}:{call.operation}", None)]
    return builder(call, directory)


def _s3(call: Call, _: Directory) -> list[Check]:
    action = "s3:" + S3_IAM_ACTIONS.get(call.operation, call.operation)
    resource = call.s3_resource
    if resource in ("arn:aws:s3:::*", ""):
        resource = ALL
    if call.s3_delete_keys:
        bucket = resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
        return [Check("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{k}") for k in call.s3_delete_keys]
    checks = [Check(action, resource)]
    source = _header(call.headers, "x-amz-copy-source")
    if source:
        path = unquote(source.split("?", 1)[0]).lstrip("/")
        checks.append(Check("s3:GetObject", f"arn:aws:s3:::{path}"))
    return checks


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _dynamodb(call: Call, _: Directory) -> list[Check]:
    action = f"dynamodb:{call.operation}"
    params = call.params

    def table(name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:aws:dynamodb:{call.region}:{call.account}:table/{name}"

    if call.operation == "TransactWriteItems":
        checks = []
        for item in params.get("TransactItems") or []:
            for kind, body in item.items():
                iam = _TRANSACT_WRITE.get(kind)
                checks.append(Check(f"dynamodb:{iam}" if iam else action, table(body["TableName"])))
        return checks or [Check(action, ALL)]
    if call.operation == "TransactGetItems":
        names = [item["Get"]["TableName"] for item in params.get("TransactItems") or []]
        return [Check("dynamodb:GetItem", table(n)) for n in names] or [Check(action, ALL)]
    if "RequestItems" in params:
        return [Check(action, table(name)) for name in params["RequestItems"]]
    if "ResourceArn" in params:
        return [Check(action, str(params["ResourceArn"]))]
    name = params.get("TableName") or params.get("TableArn")
    if not name:
        return [Check(action, ALL)]
    arn = table(str(name))
    if params.get("IndexName"):
        arn += f"/index/{params['IndexName']}"
    return [Check(action, arn)]


def _cloudformation(call: Call, directory: Directory) -> list[Check]:
    action = f"cloudformation:{call.operation}"
    stack = call.params.get("StackName")
    change_set = call.params.get("ChangeSetName")
    if not stack and change_set and str(change_set).startswith("arn:"):
        found = directory.change_set_stack(call.region, call.account, str(change_set))
        return [Check(action, found)]
    if not stack:
        return [Check(action, ALL)]
    name = str(stack)
    if name.startswith("arn:"):
        return [Check(action, name)]
    arn = directory.stack_arn(call.region, call.account, name)
    if arn is None:  # a stack not created yet: AWS names it with the id it will get
        arn = f"arn:aws:cloudformation:{call.region}:{call.account}:stack/{name}/{uuid.uuid4()}"
    return [Check(action, arn)]


def _rds(call: Call, _: Directory) -> list[Check]:
    action = f"rds:{call.operation}"
    checks = []
    for param, kind in _RDS_IDENTIFIERS.items():
        value = call.params.get(param)
        if not value:
            continue
        text = str(value)
        arn = (
            text
            if text.startswith("arn:")
            else (f"arn:aws:rds:{call.region}:{call.account}:{kind}:{text}")
        )
        checks.append(Check(action, arn))
    if call.params.get("ResourceName"):
        checks.append(Check(action, str(call.params["ResourceName"])))
    return checks or [Check(action, ALL)]


def _iam(call: Call, directory: Directory) -> list[Check]:
    action = f"iam:{call.operation}"
    params = call.params
    path = str(params.get("Path") or "/")
    if params.get("PolicyArn") and not params.get("RoleName") and not params.get("UserName"):
        return [Check(action, str(params["PolicyArn"]))]
    if params.get("RoleName"):
        name = str(params["RoleName"])
        arn = directory.role_arn(call.account, name) or (
            f"arn:aws:iam::{call.account}:role{path}{name}"
        )
        return [Check(action, arn)]
    if params.get("UserName"):
        name = str(params["UserName"])
        arn = directory.user_arn(call.account, name) or (
            f"arn:aws:iam::{call.account}:user{path}{name}"
        )
        return [Check(action, arn)]
    if params.get("GroupName"):
        return [Check(action, f"arn:aws:iam::{call.account}:group{path}{params['GroupName']}")]
    return [Check(action, ALL)]


def _sts(call: Call, _: Directory) -> list[Check]:
    action = f"sts:{call.operation}"
    role = call.params.get("RoleArn")
    if not role:
        return [Check(action, ALL)]
    checks = [Check(action, str(role))]
    if any(str(k).startswith("Tags.member.") for k in call.params):
        checks.append(Check("sts:TagSession", str(role)))
    if call.params.get("SourceIdentity"):
        checks.append(Check("sts:SetSourceIdentity", str(role)))
    return checks


_BUILDERS = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "cloudformation": _cloudformation,
    "rds": _rds,
    "iam": _iam,
    "sts": _sts,
}
