"""Resources that match a scope's pattern only through tricks are refused, never issued.

Each trick starts from a resource the payments (or ledger) scope grants and bends it: case
changes, '..' and './' segments, percent-encoding, look-alike and fullwidth characters,
whitespace, NULs and invisible characters around or inside it, another partition, account,
region or environment, extra colons. IAM matches resource ARNs literally and
case-sensitively, and so does the broker: every trick gets a 400 naming the field
``resources`` (a write or delete that names everything may instead get 403
``blast_radius_exceeded``); the fake issuers see no call and no approval request opens.
The untouched resources are issued (read) or opened for approval (write), so a refusal
below is the trick's doing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.support import assert_clean_error, issuer_calls, patient_broker
from tests.fixtures.broker import READ_PAYMENTS, Broker

S3_OBJECT = "arn:aws:s3:::payments-prod-invoices/2026/11/inv-1.pdf"
S3_BUCKET = "arn:aws:s3:::payments-prod-invoices"
TABLE = "arn:aws:dynamodb:us-east-1:111111111111:table/payments-prod-ledger"
SNAPSHOT = "arn:aws:rds:us-east-1:111111111111:snapshot:payments-prod-2026-11"
LEGIT = [S3_OBJECT, S3_BUCKET, TABLE, SNAPSHOT]

TRICKS: dict[str, list[str]] = {
    "case": [
        "ARN:aws:s3:::payments-prod-invoices/x",
        "arn:AWS:s3:::payments-prod-invoices/x",
        "arn:aws:S3:::payments-prod-invoices/x",
        "arn:aws:s3:::Payments-prod-invoices/x",
        "arn:aws:s3:::payments-PROD-invoices/x",
        TABLE.replace("table/", "Table/"),
        TABLE.replace("payments-prod-ledger", "payments-prod-Ledger"),
        TABLE.replace("us-east-1", "US-EAST-1"),
    ],
    "dot segments": [
        "arn:aws:s3:::payments-prod-invoices/../payments-prod-secrets/key",
        "arn:aws:s3:::payments-prod-invoices/./x",
        "arn:aws:s3:::payments-prod-invoices/a/../../other-bucket/x",
        "arn:aws:s3:::payments-prod-invoices/.",
        "arn:aws:s3:::payments-prod-invoices/..",
        TABLE + "/../payments-prod-other",
        TABLE.replace("table/", "table/./"),
    ],
    "percent-encoding": [
        "arn:aws:s3:::payments-prod-invoices/%2e%2e/secrets",
        "arn:aws:s3:::payments-prod-invoices%2f..%2fother",
        "arn:aws:s3:::payments-prod-invoices/x%00.pdf",
        "arn%3Aaws%3As3%3A%3A%3Apayments-prod-invoices/x",
        TABLE.replace("table/", "table%2F"),
        "arn:aws:s3:::payments-prod-invoices/%252e%252e/x",
    ],
    "look-alikes": [
        "arn:aws:s3:::p\u0430yments-prod-invoices/x",  # Cyrillic a
        "arn:aws:s3:::payments-prod-inv\u043eices/x",  # Cyrillic o
        "\uff41rn:aws:s3:::payments-prod-invoices/x",  # fullwidth a
        "arn:aws:s3:::\uff50\uff41\uff59ments-prod-invoices/x",  # fullwidth p a y
        "arn\uff1aaws:s3:::payments-prod-invoices/x",  # fullwidth colon
        "arn:aws:s3:::payments\u2010prod-invoices/x",  # Unicode hyphen
        "arn:aws:s3:::payments-prod-invoices\u2215x",  # division slash
        TABLE.replace("111111111111", "\uff11" * 12),  # fullwidth digits
        TABLE.replace("us-east-1", "us-east-\u0661"),  # Arabic-Indic one
        "arn:aws:s3:::payments-prod-\u0131nvoices/x",  # dotless i
    ],
    "whitespace, NULs, invisibles": [
        " " + S3_OBJECT,
        S3_BUCKET + " ",
        "\t" + TABLE,
        TABLE + "\n",
        TABLE + "\x00",
        "\x00" + S3_OBJECT,
        S3_BUCKET + "\u00a0",
        "\u00a0" + S3_OBJECT,
        TABLE + "\u200b",
        "\ufeff" + TABLE,
        S3_BUCKET + "\u2028",
        TABLE.replace("payments", "pay\u200bments"),
        TABLE + "\u202e",
        "arn:aws:s3:::payments-prod-invoices\r/x",
    ],
    "partition": [
        S3_OBJECT.replace("arn:aws:", "arn:aws-cn:"),
        S3_OBJECT.replace("arn:aws:", "arn:aws-us-gov:"),
        TABLE.replace("arn:aws:", "arn:aws-cn:"),
        TABLE.replace("arn:aws:", "arn:aws-us-gov:"),
        TABLE.replace("arn:aws:", "arn:aws-iso:"),
        TABLE.replace("arn:aws:", "arn::"),
    ],
    "account": [
        TABLE.replace("111111111111", "222222222222"),  # staging's account
        TABLE.replace("111111111111", "111111111112"),
        TABLE.replace("111111111111", "11111111111"),
        TABLE.replace("111111111111", "0111111111111"),
        SNAPSHOT.replace("111111111111", "222222222222"),
    ],
    "region": [
        TABLE.replace("us-east-1", "eu-west-1"),  # allowed in prod, but not the one asked for
        TABLE.replace("us-east-1", "us-west-2"),
        TABLE.replace("us-east-1", ""),
        SNAPSHOT.replace("us-east-1", "eu-west-1"),
    ],
    "environment": [
        "arn:aws:s3:::payments-staging-invoices/x",
        TABLE.replace("payments-prod-ledger", "payments-staging-ledger"),
    ],
    "extra colons": [
        "arn:aws:s3::::payments-prod-invoices/x",
        "arn:aws:s3:::payments-prod-invoices:/x",
        "arn:aws:s3:::payments-prod-invoices:",
        TABLE.replace(":table/", "::table/"),
        TABLE + ":",
        TABLE.replace("arn:aws:dynamodb:", "arn:aws:dynamodb::"),
        ":" + TABLE,
    ],
    "neighbours": [
        TABLE + "/index/by-date",
        TABLE + "-archive",
        S3_BUCKET + "-archive/x",
        S3_BUCKET + "x",
        "arn:aws:rds:us-east-1:111111111111:db:payments-prod-replica",
    ],
}


@pytest.fixture()
def target(tmp_path: Path) -> Iterator[Broker]:
    made = patient_broker(tmp_path)
    yield made
    made.services.close()


def ask(broker: Broker, tier: str, resources: list[str], **changes: str) -> object:
    body = {**READ_PAYMENTS, "tier": tier, "resources": resources, **changes}
    return broker.post("/v1/credentials", body)


def assert_refused(broker: Broker, response: object, tier: str, resource: str) -> None:
    body = assert_clean_error(response, (400, 403))
    if body["error"] == "blast_radius_exceeded":
        assert tier != "read", (resource, body)
    else:
        assert (body["error"], body.get("field")) == ("bad_request", "resources"), (resource, body)
    assert issuer_calls(broker) == 0, resource
    assert broker.services.store.count_requests("pending") == 0, resource


@pytest.mark.parametrize("tier", ["read", "write"])
def test_the_untouched_resources_are_granted(target: Broker, tier: str) -> None:
    for resource in LEGIT:
        response = ask(target, tier, [resource])
        assert response.status_code == (200 if tier == "read" else 202), (  # type: ignore[attr-defined]
            resource,
            response.get_json(),  # type: ignore[attr-defined]
        )


@pytest.mark.parametrize("tier", ["read", "write", "delete"])
@pytest.mark.parametrize("group", sorted(TRICKS))
def test_tricked_resources_are_refused(target: Broker, tier: str, group: str) -> None:
    for resource in TRICKS[group]:
        assert_refused(target, ask(target, tier, [resource]), tier, resource)
        # Hidden among resources that are fine, it spoils the whole request.
        assert_refused(target, ask(target, tier, [S3_OBJECT, resource]), tier, resource)


@pytest.mark.parametrize("tier", ["write", "delete"])
@pytest.mark.parametrize(
    "resource",
    [
        "*",
        "arn:aws:s3:::*",
        "arn:aws:s3:::*/*",
        "arn:*:s3:::payments-prod-invoices/x",
        "arn:aws:dynamodb:*:111111111111:table/payments-prod-ledger",
        "arn:aws:dynamodb:us-east-1:*:table/payments-prod-ledger",
        "arn:aws:dynamodb:us-east-1:111111111111:table/*",
        "arn:aws:dynamodb:us-east-1:111111111111:table/??????????????????????",
        "not-an-arn",
    ],
)
def test_names_for_everything_exceed_the_blast_radius(
    target: Broker, tier: str, resource: str
) -> None:
    response = ask(target, tier, [resource])
    assert assert_clean_error(response, 403)["error"] == "blast_radius_exceeded"
    assert issuer_calls(target) == 0 and target.services.store.count_requests("pending") == 0


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:s3:::payments-prod-*",
        "arn:aws:s3:::payments-prod-invoice?/x",
        "arn:aws:s3:::*-invoices/x",
        "arn:aws:dynamodb:us-east-1:111111111111:table/payments-prod-*",
        "arn:aws:dynamodb:us-east-?:111111111111:table/payments-prod-ledger",
    ],
)
def test_a_wildcard_wider_than_the_pattern_is_refused_for_read(
    target: Broker, resource: str
) -> None:
    assert_refused(target, ask(target, "read", [resource]), "read", resource)


LEDGER = {"service": "ledger", "environment": "prod"}
LEDGER_AGENT = "ledger-maintainer"
VAULT_TRICKS = [
    "LEDGER/prod/key",
    "ledger/Prod/key",
    "ledger/staging/key",
    "ledger/prod/../staging/key",
    "ledger/prod/./key",
    "./ledger/prod/key",
    "/ledger/prod/key",
    "ledger/prod%2fkey",
    "ledger%2Fprod/key",
    " ledger/prod/key",
    "ledger/prod/key\x00",
    "ledger/prod/key\n",
    "l\u0435dger/prod/key",  # Cyrillic e
    "\uff4cedger/prod/key",  # fullwidth l
    "ledger\uff0fprod/key",  # fullwidth solidus
    "secret/data/ledger/prod/key",
    "ledger/prod",
    "ledger/production/key",
]
DATABASE_TRICKS = [
    "LEDGER.entries",
    "ledger.Entries",
    "ledger.entries ",
    "ledger.entries\x00",
    'ledger."entries"',
    "ledger.entries;drop table ledger.accounts",
    "ledger.entries--",
    "ledger..entries",
    "ledger.%65ntries",
    "l\u0435dger.entries",
    "ledger\uff0eentries",
    "public.invoices",
    "ledger.entries.x",
    "ledger",
]


@pytest.mark.parametrize("tier", ["read", "write", "delete"])
@pytest.mark.parametrize(
    ("backend", "good", "tricks"),
    [("vault", "ledger/prod/key", VAULT_TRICKS), ("database", "ledger.entries", DATABASE_TRICKS)],
    ids=["vault", "database"],
)
def test_vault_and_database_tricks_are_refused(
    target: Broker, tier: str, backend: str, good: str, tricks: list[str]
) -> None:
    body = {**LEDGER, "backend": backend, "tier": tier}
    control = target.post("/v1/credentials", {**body, "resources": [good]}, agent=LEDGER_AGENT)
    assert control.status_code == (200 if tier == "read" else 202), control.get_json()
    pending = target.services.store.count_requests("pending")
    calls = issuer_calls(target)
    for resource in tricks:
        response = target.post(
            "/v1/credentials", {**body, "resources": [resource]}, agent=LEDGER_AGENT
        )
        error = assert_clean_error(response, (400, 403))
        if error["error"] == "blast_radius_exceeded":
            assert tier != "read", resource
        else:
            assert error.get("field") == "resources", (resource, error)
    assert issuer_calls(target) == calls
    assert target.services.store.count_requests("pending") == pending
