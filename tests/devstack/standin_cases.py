"""AWS's documented policy evaluation cases, as data both evaluators read.

Each case names the rule it exercises (AWS IAM User Guide: "Policy evaluation logic",
"Session policies", "Condition operators", "IAM JSON policy elements", "Role trust
policies", "Revoking IAM role temporary security credentials"). The stand-in's evaluator
must give ``expected``; tests/devstack/test_standin_evaluation.py also asks an independent
evaluator (cloud-copilot's iam-simulate) the same question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "111122223333"
OTHER = "444455556666"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/broker/payments-prod-write"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/payments-prod-write/copilot-req1"
USER = f"arn:aws:iam::{ACCOUNT}:user/broker"
OTHER_USER = f"arn:aws:iam::{OTHER}:user/broker"
BUCKET = "arn:aws:s3:::payments-prod-invoices"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/payments-prod-ledger"
STACK = (
    f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/acme-prod-web/"
    "8f1d2c3e-0000-4000-8000-1234567890ab"
)
DB = f"arn:aws:rds:us-east-1:{ACCOUNT}:db:payments-prod"
SNAPSHOT = f"arn:aws:rds:us-east-1:{ACCOUNT}:snapshot:payments-prod-2026-11"
CUTOFF = "2026-11-20T12:00:09Z"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def revoke(**narrowing: str) -> dict[str, Any]:
    """The kill switch's statement (broker/guard/revocation.py's shape)."""
    condition: dict[str, Any] = {"DateLessThan": {"aws:TokenIssueTime": CUTOFF}}
    if narrowing:
        condition["StringEquals"] = narrowing
    return deny("*", "*", Condition=condition)


def trusts(principal: Any, action: Any = "sts:AssumeRole", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": action, **extra}


SESSION_CONTEXT = {
    "aws:PrincipalArn": ROLE,
    "aws:PrincipalAccount": ACCOUNT,
    "aws:PrincipalType": "AssumedRole",
    "aws:RequestedRegion": "us-east-1",
    "aws:SourceIdentity": "agent-payments-copilot",
    "aws:PrincipalTag/broker:request-id": "req_01",
    "aws:TokenIssueTime": "2026-11-20T12:00:05Z",
    "aws:CurrentTime": "2026-11-20T12:30:00Z",
}
USER_CONTEXT = {
    "aws:PrincipalArn": USER,
    "aws:PrincipalAccount": ACCOUNT,
    "aws:PrincipalType": "User",
    "aws:username": "broker",
    "aws:RequestedRegion": "us-east-1",
    "aws:CurrentTime": "2026-11-20T12:30:00Z",
}
WRITE_ROLE = doc(allow(["s3:*", "dynamodb:*", "cloudformation:*", "rds:*"]))
NARROW_SESSION = doc(allow("s3:PutObject", f"{BUCKET}/2026/*"))


@dataclass(frozen=True)
class Case:
    name: str
    action: str
    resource: str
    expected: str  # Allowed | ExplicitlyDenied | ImplicitlyDenied
    identity: list[dict[str, Any]] = field(default_factory=list)
    session: dict[str, Any] | None = None
    trust: dict[str, Any] | None = None  # the role's trust policy (AssumeRole)
    principal: str = SESSION
    context: dict[str, Any] = field(default_factory=lambda: dict(SESSION_CONTEXT))
    resource_account: str = ACCOUNT


def _ctx(changes: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The session's context (or ``base``) with keys changed (None removes one)."""
    merged = dict(base or SESSION_CONTEXT)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _cases() -> list[Case]:
    obj = f"{BUCKET}/2026/11/a.pdf"
    return [
        # -- Policy evaluation logic: default deny, allow, explicit deny ----------------
        Case("no policy at all: implicit deny", "s3:GetObject", obj, "ImplicitlyDenied"),
        Case(
            "an allow that matches",
            "s3:GetObject",
            obj,
            "Allowed",
            [doc(allow("s3:GetObject", obj))],
        ),
        Case(
            "allow of another action only",
            "s3:PutObject",
            obj,
            "ImplicitlyDenied",
            [doc(allow("s3:GetObject", "*"))],
        ),
        Case("action wildcard s3:Get*", "s3:GetObject", obj, "Allowed", [doc(allow("s3:Get*"))]),
        Case(
            "action names are case-insensitive",
            "s3:GetObject",
            obj,
            "Allowed",
            [doc(allow("S3:getobject"))],
        ),
        Case("action ? wildcard", "s3:GetObject", obj, "Allowed", [doc(allow("s3:?etObject"))]),
        Case(
            "explicit deny beats an allow in the same policy",
            "s3:GetObject",
            obj,
            "ExplicitlyDenied",
            [doc(allow("s3:*"), deny("s3:GetObject", obj))],
        ),
        Case(
            "explicit deny in another policy beats an allow",
            "s3:GetObject",
            obj,
            "ExplicitlyDenied",
            [doc(allow("s3:*")), doc(deny("s3:*", f"{BUCKET}/*"))],
        ),
        Case(
            "a deny on another resource does not apply",
            "s3:GetObject",
            obj,
            "Allowed",
            [doc(allow("s3:*"), deny("s3:*", f"{BUCKET}/2025/*"))],
        ),
        Case(
            "NotAction allow covers what it does not list",
            "s3:GetObject",
            obj,
            "Allowed",
            [doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})],
        ),
        Case(
            "NotAction allow excludes what it lists",
            "iam:CreateUser",
            f"arn:aws:iam::{ACCOUNT}:user/eve",
            "ImplicitlyDenied",
            [doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})],
        ),
        Case(
            "NotResource deny spares what it lists",
            "s3:GetObject",
            obj,
            "Allowed",
            [
                doc(
                    allow("s3:*"),
                    {"Effect": "Deny", "Action": "s3:*", "NotResource": [f"{BUCKET}/2026/*"]},
                )
            ],
        ),
        Case(
            "NotResource deny hits what it does not list",
            "s3:GetObject",
            f"{BUCKET}/2025/x",
            "ExplicitlyDenied",
            [
                doc(
                    allow("s3:*"),
                    {"Effect": "Deny", "Action": "s3:*", "NotResource": [f"{BUCKET}/2026/*"]},
                )
            ],
        ),
        Case(
            "a single statement object (not a list)",
            "s3:GetObject",
            obj,
            "Allowed",
            [{"Version": "2012-10-17", "Statement": allow("s3:GetObject", obj)}],
        ),
        # -- Resource element -----------------------------------------------------------
        Case(
            "object prefix 2026/* covers 2026/11/a.pdf",
            "s3:PutObject",
            obj,
            "Allowed",
            [doc(allow("s3:PutObject", f"{BUCKET}/2026/*"))],
        ),
        Case(
            "object prefix 2026/* does not cover 2025/x",
            "s3:PutObject",
            f"{BUCKET}/2025/x",
            "ImplicitlyDenied",
            [doc(allow("s3:PutObject", f"{BUCKET}/2026/*"))],
        ),
        Case(
            "object ARNs are case-sensitive",
            "s3:GetObject",
            f"{BUCKET}/readme.txt",
            "ImplicitlyDenied",
            [doc(allow("s3:GetObject", f"{BUCKET}/README.txt"))],
        ),
        Case(
            "a bucket ARN does not cover its objects",
            "s3:GetObject",
            obj,
            "ImplicitlyDenied",
            [doc(allow("s3:GetObject", BUCKET))],
        ),
        Case(
            "resource ? wildcard",
            "s3:GetObject",
            f"{BUCKET}/2026/1",
            "Allowed",
            [doc(allow("s3:GetObject", f"{BUCKET}/202?/?"))],
        ),
        Case(
            "a list of resources: any one matches",
            "s3:ListBucket",
            BUCKET,
            "Allowed",
            [doc(allow("s3:ListBucket", ["arn:aws:s3:::other", BUCKET]))],
        ),
        Case(
            "DynamoDB table ARN",
            "dynamodb:GetItem",
            TABLE,
            "Allowed",
            [doc(allow("dynamodb:GetItem", TABLE))],
        ),
        Case(
            "another table",
            "dynamodb:GetItem",
            TABLE.replace("ledger", "users"),
            "ImplicitlyDenied",
            [doc(allow("dynamodb:GetItem", TABLE))],
        ),
        Case(
            "a table ARN does not cover its indexes",
            "dynamodb:Query",
            f"{TABLE}/index/by-date",
            "ImplicitlyDenied",
            [doc(allow("dynamodb:Query", TABLE))],
        ),
        Case(
            "table in another region",
            "dynamodb:GetItem",
            TABLE.replace("us-east-1", "eu-west-1"),
            "ImplicitlyDenied",
            [doc(allow("dynamodb:GetItem", TABLE))],
        ),
        Case(
            "region wildcard in the ARN",
            "dynamodb:GetItem",
            TABLE.replace("us-east-1", "eu-west-1"),
            "Allowed",
            [doc(allow("dynamodb:GetItem", TABLE.replace("us-east-1", "*")))],
        ),
        Case(
            "stack pattern acme-prod-*/*",
            "cloudformation:UpdateStack",
            STACK,
            "Allowed",
            [
                doc(
                    allow(
                        "cloudformation:UpdateStack",
                        f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/acme-prod-*/*",
                    )
                )
            ],
        ),
        Case(
            "stack pattern of staging misses prod",
            "cloudformation:DeleteStack",
            STACK,
            "ImplicitlyDenied",
            [
                doc(
                    allow(
                        "cloudformation:DeleteStack",
                        f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/acme-staging-*/*",
                    )
                )
            ],
        ),
        Case(
            "wildcard-only action with Resource *",
            "cloudformation:ListStacks",
            "*",
            "Allowed",
            [doc(allow("cloudformation:ListStacks", "*"))],
        ),
        Case(
            "wildcard-only action with a specific ARN",
            "cloudformation:ListStacks",
            "*",
            "ImplicitlyDenied",
            [doc(allow("cloudformation:ListStacks", STACK))],
        ),
        Case(
            "RDS snapshot pattern",
            "rds:CreateDBSnapshot",
            SNAPSHOT,
            "Allowed",
            [doc(allow("rds:CreateDBSnapshot", [DB, SNAPSHOT.replace("2026-11", "*")]))],
        ),
        Case(
            "RDS instance not named",
            "rds:CreateDBSnapshot",
            DB.replace("payments-prod", "payments-prod-replica"),
            "ImplicitlyDenied",
            [doc(allow("rds:CreateDBSnapshot", [DB, SNAPSHOT.replace("2026-11", "*")]))],
        ),
        Case(
            "account in the ARN must match",
            "dynamodb:GetItem",
            TABLE.replace(ACCOUNT, OTHER),
            "ImplicitlyDenied",
            [doc(allow("dynamodb:GetItem", TABLE))],
        ),
        # -- Session policies -----------------------------------------------------------
        Case(
            "session ∩ role: inside both",
            "s3:PutObject",
            obj,
            "Allowed",
            [WRITE_ROLE],
            NARROW_SESSION,
        ),
        Case(
            "session ∩ role: outside the session policy (2025/x)",
            "s3:PutObject",
            f"{BUCKET}/2025/x",
            "ImplicitlyDenied",
            [WRITE_ROLE],
            NARROW_SESSION,
        ),
        Case(
            "session ∩ role: another action (GetObject README)",
            "s3:GetObject",
            f"{BUCKET}/README.txt",
            "ImplicitlyDenied",
            [WRITE_ROLE],
            NARROW_SESSION,
        ),
        Case(
            "session policy cannot widen the role",
            "s3:DeleteObject",
            obj,
            "ImplicitlyDenied",
            [doc(allow("s3:PutObject"))],
            doc(allow("s3:*")),
        ),
        Case(
            "explicit deny in the session policy",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [WRITE_ROLE],
            doc(allow("s3:*"), deny("s3:PutObject", obj)),
        ),
        Case(
            "an empty session policy grants nothing",
            "s3:PutObject",
            obj,
            "ImplicitlyDenied",
            [WRITE_ROLE],
            doc(),
        ),
        Case(
            "session allows, role does not",
            "dynamodb:PutItem",
            TABLE,
            "ImplicitlyDenied",
            [doc(allow("s3:*"))],
            doc(allow("dynamodb:PutItem", TABLE)),
        ),
        # -- Conditions the broker writes ------------------------------------------------
        Case(
            "aws:RequestedRegion in the allowed list",
            "dynamodb:GetItem",
            TABLE,
            "Allowed",
            [
                doc(
                    allow(
                        "dynamodb:GetItem",
                        TABLE,
                        Condition={
                            "StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}
                        },
                    )
                )
            ],
        ),
        Case(
            "aws:RequestedRegion outside the list",
            "dynamodb:GetItem",
            TABLE.replace("us-east-1", "us-west-2"),
            "ImplicitlyDenied",
            [
                doc(
                    allow(
                        "dynamodb:GetItem",
                        "*",
                        Condition={
                            "StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}
                        },
                    )
                )
            ],
            context=_ctx({"aws:RequestedRegion": "us-west-2"}),
        ),
        Case(
            "revocation: session issued before the cut-off",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [WRITE_ROLE, doc(revoke())],
            NARROW_SESSION,
        ),
        Case(
            "revocation: issued one second before the cut-off",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [WRITE_ROLE, doc(revoke())],
            NARROW_SESSION,
            context=_ctx({"aws:TokenIssueTime": "2026-11-20T12:00:08Z"}),
        ),
        Case(
            "revocation: issued at the cut-off second (not less than)",
            "s3:PutObject",
            obj,
            "Allowed",
            [WRITE_ROLE, doc(revoke())],
            NARROW_SESSION,
            context=_ctx({"aws:TokenIssueTime": CUTOFF}),
        ),
        Case(
            "revocation: a new session after the cut-off",
            "s3:PutObject",
            obj,
            "Allowed",
            [WRITE_ROLE, doc(revoke())],
            NARROW_SESSION,
            context=_ctx({"aws:TokenIssueTime": "2026-11-20T12:00:10Z"}),
        ),
        Case(
            "revocation of this agent (SourceIdentity)",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [WRITE_ROLE, doc(revoke(**{"aws:SourceIdentity": "agent-payments-copilot"}))],
            NARROW_SESSION,
        ),
        Case(
            "revocation of another agent spares this one",
            "s3:PutObject",
            obj,
            "Allowed",
            [WRITE_ROLE, doc(revoke(**{"aws:SourceIdentity": "agent-reports-bot"}))],
            NARROW_SESSION,
        ),
        Case(
            "revocation of this request (session tag)",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [WRITE_ROLE, doc(revoke(**{"aws:PrincipalTag/broker:request-id": "req_01"}))],
            NARROW_SESSION,
        ),
        Case(
            "revocation of another request spares this one",
            "s3:PutObject",
            obj,
            "Allowed",
            [WRITE_ROLE, doc(revoke(**{"aws:PrincipalTag/broker:request-id": "req_02"}))],
            NARROW_SESSION,
        ),
        Case(
            "revocation narrowed by an agent, session without SourceIdentity",
            "s3:PutObject",
            obj,
            "Allowed",
            [WRITE_ROLE, doc(revoke(**{"aws:SourceIdentity": "agent-payments-copilot"}))],
            context=_ctx({"aws:SourceIdentity": None}),
        ),
        Case(
            "StringLike on aws:SourceIdentity",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(deny("*", "*", Condition={"StringLike": {"aws:SourceIdentity": "agent-pay*"}})),
            ],
        ),
        Case(
            "StringLike ? wildcard, no match",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                WRITE_ROLE,
                doc(deny("*", "*", Condition={"StringLike": {"aws:SourceIdentity": "agent-?"}})),
            ],
        ),
        Case(
            "condition key names are case-insensitive",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringEquals": {"AWS:SOURCEIDENTITY": "agent-payments-copilot"}
                        },
                    )
                ),
            ],
        ),
        Case(
            "StringEquals values are case-sensitive",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringEquals": {"aws:SourceIdentity": "Agent-Payments-Copilot"}
                        },
                    )
                ),
            ],
        ),
        Case(
            "StringEqualsIgnoreCase",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringEqualsIgnoreCase": {
                                "aws:SourceIdentity": "Agent-Payments-Copilot"
                            }
                        },
                    )
                ),
            ],
        ),
        Case(
            "two keys in one operator are ANDed",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringEquals": {
                                "aws:SourceIdentity": "agent-payments-copilot",
                                "aws:PrincipalTag/broker:request-id": "req_02",
                            }
                        },
                    )
                ),
            ],
        ),
        Case(
            "two operators are ANDed",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringEquals": {"aws:SourceIdentity": "agent-payments-copilot"},
                            "DateLessThan": {"aws:TokenIssueTime": CUTOFF},
                        },
                    )
                ),
            ],
        ),
        Case(
            "StringNotEquals with the key missing is true",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringNotEquals": {"aws:SourceIdentity": "agent-payments-copilot"}
                        },
                    )
                ),
            ],
            context=_ctx({"aws:SourceIdentity": None}),
        ),
        Case(
            "StringNotEquals matching one of its values is false",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringNotEquals": {
                                "aws:SourceIdentity": ["agent-x", "agent-payments-copilot"]
                            }
                        },
                    )
                ),
            ],
        ),
        Case(
            "StringEquals with the key missing is false",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={
                            "StringEquals": {"aws:SourceIdentity": "agent-payments-copilot"}
                        },
                    )
                ),
            ],
            context=_ctx({"aws:SourceIdentity": None}),
        ),
        Case(
            "...IfExists with the key missing is true",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={"StringEqualsIfExists": {"aws:SourceIdentity": "agent-x"}},
                    )
                )
            ],
            context=_ctx({"aws:SourceIdentity": None}),
        ),
        Case(
            "...IfExists with the key present compares",
            "s3:PutObject",
            obj,
            "ImplicitlyDenied",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={"StringEqualsIfExists": {"aws:SourceIdentity": "agent-x"}},
                    )
                )
            ],
        ),
        Case(
            "Null true: the key is absent",
            "s3:PutObject",
            obj,
            "ExplicitlyDenied",
            [WRITE_ROLE, doc(deny("*", "*", Condition={"Null": {"aws:SourceIdentity": "true"}}))],
            context=_ctx({"aws:SourceIdentity": None}),
        ),
        Case(
            "Null true: the key is present",
            "s3:PutObject",
            obj,
            "Allowed",
            [WRITE_ROLE, doc(deny("*", "*", Condition={"Null": {"aws:SourceIdentity": "true"}}))],
        ),
        Case(
            "DateGreaterThan on aws:CurrentTime",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
                    )
                )
            ],
        ),
        Case(
            "DateLessThan on aws:CurrentTime, in the past",
            "s3:PutObject",
            obj,
            "ImplicitlyDenied",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={"DateLessThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
                    )
                )
            ],
        ),
        Case(
            "NumericLessThan",
            "s3:ListBucket",
            BUCKET,
            "Allowed",
            [
                doc(
                    allow(
                        "s3:ListBucket",
                        BUCKET,
                        Condition={"NumericLessThanEquals": {"s3:max-keys": "100"}},
                    )
                )
            ],
            context=_ctx({"s3:max-keys": "10"}),
        ),
        Case(
            "NumericLessThan fails",
            "s3:ListBucket",
            BUCKET,
            "ImplicitlyDenied",
            [
                doc(
                    allow(
                        "s3:ListBucket",
                        BUCKET,
                        Condition={"NumericLessThanEquals": {"s3:max-keys": "100"}},
                    )
                )
            ],
            context=_ctx({"s3:max-keys": "1000"}),
        ),
        Case(
            "StringLike on s3:prefix",
            "s3:ListBucket",
            BUCKET,
            "Allowed",
            [
                doc(
                    allow(
                        "s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["2026/*"]}}
                    )
                )
            ],
            context=_ctx({"s3:prefix": "2026/11/"}),
        ),
        Case(
            "Bool aws:SecureTransport false",
            "s3:GetObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(deny("s3:*", "*", Condition={"Bool": {"aws:SecureTransport": "false"}})),
            ],
            context=_ctx({"aws:SecureTransport": "false"}),
        ),
        Case(
            "IpAddress in a range",
            "s3:GetObject",
            obj,
            "Allowed",
            [doc(allow("s3:*", "*", Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}))],
            context=_ctx({"aws:SourceIp": "127.0.0.1"}),
        ),
        Case(
            "NotIpAddress",
            "s3:GetObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(deny("*", "*", Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
            ],
            context=_ctx({"aws:SourceIp": "127.0.0.1"}),
        ),
        Case(
            "ArnLike on aws:PrincipalArn",
            "s3:GetObject",
            obj,
            "Allowed",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={
                            "ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/broker/*"}
                        },
                    )
                )
            ],
        ),
        Case(
            "ArnNotLike on aws:PrincipalArn",
            "s3:GetObject",
            obj,
            "ImplicitlyDenied",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={
                            "ArnNotLike": {
                                "aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/broker/*"
                            }
                        },
                    )
                )
            ],
        ),
        Case(
            "ForAnyValue:StringEquals on a multivalued key",
            "s3:GetObject",
            obj,
            "ExplicitlyDenied",
            [
                WRITE_ROLE,
                doc(
                    deny(
                        "*",
                        "*",
                        Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["secret"]}},
                    )
                ),
            ],
            context=_ctx({"aws:TagKeys": ["team", "secret"]}),
        ),
        Case(
            "ForAllValues:StringEquals, one value outside",
            "s3:GetObject",
            obj,
            "ImplicitlyDenied",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}},
                    )
                )
            ],
            context=_ctx({"aws:TagKeys": ["team", "secret"]}),
        ),
        Case(
            "ForAllValues with the key missing is true",
            "s3:GetObject",
            obj,
            "Allowed",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}},
                    )
                )
            ],
        ),
        Case(
            "policy variable ${aws:username} in a resource",
            "s3:GetObject",
            f"{BUCKET}/home/broker/x",
            "Allowed",
            [doc(allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*"))],
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "policy variable for another user",
            "s3:GetObject",
            f"{BUCKET}/home/alice/x",
            "ImplicitlyDenied",
            [doc(allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*"))],
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "policy variable from a session tag in a condition",
            "s3:PutObject",
            obj,
            "Allowed",
            [
                doc(
                    allow(
                        "s3:*",
                        "*",
                        Condition={
                            "StringEquals": {"aws:SourceIdentity": "${aws:PrincipalTag/agent}"}
                        },
                    )
                )
            ],
            context=_ctx({"aws:PrincipalTag/agent": "agent-payments-copilot"}),
        ),
        # -- Role trust policies (AssumeRole) -------------------------------------------
        Case(
            "same account, trust names the user: no identity policy needed",
            "sts:AssumeRole",
            ROLE,
            "Allowed",
            [],
            trust=doc(trusts(USER)),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "same account, trust names the account: identity policy needed",
            "sts:AssumeRole",
            ROLE,
            "ImplicitlyDenied",
            [],
            trust=doc(trusts(f"arn:aws:iam::{ACCOUNT}:root")),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "same account, trust names the account and identity allows",
            "sts:AssumeRole",
            ROLE,
            "Allowed",
            [doc(allow("sts:AssumeRole", ROLE))],
            trust=doc(trusts(f"arn:aws:iam::{ACCOUNT}:root")),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "identity allows, trust does not name the caller",
            "sts:AssumeRole",
            ROLE,
            "ImplicitlyDenied",
            [doc(allow("sts:AssumeRole"))],
            trust=doc(trusts(f"arn:aws:iam::{ACCOUNT}:user/someone-else")),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "cross account: trust alone is not enough",
            "sts:AssumeRole",
            ROLE,
            "ImplicitlyDenied",
            [],
            trust=doc(trusts(OTHER_USER)),
            principal=OTHER_USER,
            context=_ctx(
                {"aws:PrincipalArn": OTHER_USER, "aws:PrincipalAccount": OTHER}, USER_CONTEXT
            ),
        ),
        Case(
            "cross account: trust and identity",
            "sts:AssumeRole",
            ROLE,
            "Allowed",
            [doc(allow("sts:AssumeRole", ROLE))],
            trust=doc(trusts(OTHER_USER)),
            principal=OTHER_USER,
            context=_ctx(
                {"aws:PrincipalArn": OTHER_USER, "aws:PrincipalAccount": OTHER}, USER_CONTEXT
            ),
        ),
        Case(
            "explicit deny in the trust policy",
            "sts:AssumeRole",
            ROLE,
            "ExplicitlyDenied",
            [doc(allow("sts:AssumeRole"))],
            trust=doc(
                trusts(USER),
                {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
            ),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "trust requires a SourceIdentity, one is given",
            "sts:AssumeRole",
            ROLE,
            "Allowed",
            [doc(allow("sts:AssumeRole"))],
            trust=doc(trusts(USER, Condition={"StringLike": {"sts:SourceIdentity": "*"}})),
            principal=USER,
            context=_ctx({"sts:SourceIdentity": "agent-payments-copilot"}, USER_CONTEXT),
        ),
        Case(
            "trust requires a SourceIdentity, none given",
            "sts:AssumeRole",
            ROLE,
            "ImplicitlyDenied",
            [doc(allow("sts:AssumeRole"))],
            trust=doc(trusts(USER, Condition={"StringLike": {"sts:SourceIdentity": "*"}})),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "session tags need sts:TagSession in the trust",
            "sts:TagSession",
            ROLE,
            "ImplicitlyDenied",
            [doc(allow("sts:*"))],
            trust=doc(trusts(USER)),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
        Case(
            "sts:TagSession allowed by the trust",
            "sts:TagSession",
            ROLE,
            "Allowed",
            [doc(allow("sts:*"))],
            trust=doc(trusts(USER, ["sts:AssumeRole", "sts:TagSession"])),
            principal=USER,
            context=dict(USER_CONTEXT),
        ),
    ]


CASES = _cases()
