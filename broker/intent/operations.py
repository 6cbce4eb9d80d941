"""Operations written by hand: ``{"operations": [...]}`` for AWS, Vault or the database.

Strict: unknown fields, unknown actions, wildcard actions, repeated operations and
resources that cannot be what the action acts on are refused, each naming its field.
"""

from __future__ import annotations

import re

from broker.intent.arns import arn_fits_action
from broker.intent.errors import InvalidIntent
from broker.intent.fields import Field
from broker.intent.model import AwsOperation, DatabaseOperation, Operation, VaultOperation
from broker.policy.compiler import CAPABILITY_ORDER
from broker.policy.iam_actions import IamDatabase
from broker.policy.resources import suspicious
from broker.scopes.model import Backend

MAX_OPERATIONS = 200
_ACTION = re.compile(r"[a-z0-9-]{1,64}:[A-Za-z0-9]{1,128}")
# Vault capabilities are CAPABILITY_ORDER's: sudo, deny and root are never asked for.
_VAULT_PATH = re.compile(r"[A-Za-z0-9_.@=-]+(?:/(?:[A-Za-z0-9_.@=-]+|\+))*(?:/\*|\*)?")
DATABASE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_DATABASE_OBJECT = re.compile(rf"{_IDENTIFIER}\.(?:{_IDENTIFIER}|\*)")


def parse_operations(field: Field, backend: Backend, iam: IamDatabase) -> tuple[Operation, ...]:
    """The operations of a hand-written intent, sorted; refuses any malformed one."""
    entries = list(field.items(MAX_OPERATIONS))
    if not entries:
        raise field.fail("must name at least one operation")
    parsed: list[Operation] = []
    for entry in entries:
        if backend == "aws":
            parsed.append(_aws(entry, iam))
        elif backend == "vault":
            parsed.append(_vault(entry))
        else:
            parsed.append(_database(entry))
    keys = [_key(op) for op in parsed]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            raise InvalidIntent(
                f"{field.path}[{index}] repeats an earlier operation on the same "
                "resource: name each once, with all it needs",
                f"{field.path}[{index}]",
            )
    return tuple(sorted(parsed, key=_key))


def _key(op: Operation) -> tuple[str, str]:
    if isinstance(op, AwsOperation):
        return (op.action, op.resource)  # the order of AwsOperation itself
    if isinstance(op, VaultOperation):
        return (op.path, "")
    return (op.table, "")


def _aws(entry: Field, iam: IamDatabase) -> AwsOperation:
    entry.only(frozenset({"action", "resource"}))
    action_field = entry.require("action")
    action = action_field.text(200)
    if not _ACTION.fullmatch(action):
        raise action_field.fail("must name one IAM action such as s3:PutObject (no wildcards)")
    info = iam.lookup(action)
    if info is None:
        raise action_field.fail(f"'{action}' is not an action AWS's authorization reference lists")
    resource_field = entry.require("resource")
    resource = resource_field.text(1100)
    if resource != "*":
        reason = suspicious(resource)
        if reason:
            raise resource_field.fail(f"refused: {reason}")
        if not info.supports_resources:
            raise resource_field.fail(
                f"must be '*': {info.full_name} is authorized on no particular resource"
            )
        if not arn_fits_action(info.full_name, resource):
            raise resource_field.fail(
                f"'{resource}' is not an ARN of a resource {info.full_name} acts on"
            )
    return AwsOperation(info.full_name, resource)


def _vault(entry: Field) -> VaultOperation:
    entry.only(frozenset({"path", "capabilities"}))
    path_field = entry.require("path")
    path = path_field.text(512)
    reason = suspicious(path)
    if reason:
        raise path_field.fail(f"refused: {reason}")
    if not _VAULT_PATH.fullmatch(path):
        raise path_field.fail(
            "must be a Vault path such as secret/data/app/key: segments of letters, digits "
            "and ._@=-, '+' as a whole segment, '*' only at the end"
        )
    capabilities_field = entry.require("capabilities")
    capabilities = capabilities_field.strings(len(CAPABILITY_ORDER), 16)
    return VaultOperation(path, _choices(capabilities_field, capabilities, CAPABILITY_ORDER))


def _database(entry: Field) -> DatabaseOperation:
    entry.only(frozenset({"object", "privileges"}))
    object_field = entry.require("object")
    name = object_field.text(130)
    if not _DATABASE_OBJECT.fullmatch(name):
        raise object_field.fail("must be schema.table (or schema.* for every table of a schema)")
    privileges_field = entry.require("privileges")
    privileges = tuple(p.upper() for p in privileges_field.strings(len(DATABASE_PRIVILEGES), 16))
    if "DROP" in privileges:
        raise privileges_field.fail(
            "must not hold DROP: PostgreSQL lets only a table's owner drop it, which no "
            "grant on one table can express; use the scope's delete tier"
        )
    return DatabaseOperation(name, _choices(privileges_field, privileges, DATABASE_PRIVILEGES))


def _choices(field: Field, chosen: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``chosen``: at least one, each among ``allowed`` once; returned in ``allowed``'s order."""
    unknown = sorted(set(chosen) - set(allowed))
    if unknown or not chosen:
        raise field.fail(
            f"must list one or more of {', '.join(allowed)}"
            + (f"; '{unknown[0]}' is not one" if unknown else "")
        )
    if len(set(chosen)) != len(chosen):
        raise field.fail("must not repeat an entry")
    return tuple(sorted(chosen, key=allowed.index))
