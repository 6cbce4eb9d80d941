"""What an escalation adds to the read tier, as approvers read it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from broker.approvals.difference import permission_difference
from broker.intake import parse_request, resolve
from tests.approvals.flows import DELETE_LEDGER, LEDGER_AGENT, WRITE_PAYMENTS, open_request
from tests.fixtures.broker import Broker


def test_the_permission_difference_lists_only_what_read_lacks(broker: Broker) -> None:
    approvals = broker.services.approvals

    def adds(body: dict[str, Any], agent: str = "payments-copilot") -> tuple[str, ...]:
        record = approvals.get(open_request(broker, body, agent))
        scope, _, _ = approvals.eligible(record)
        return permission_difference(record, scope, broker.services.iam)

    assert adds(WRITE_PAYMENTS) == (
        "adds s3:PutObject on arn:aws:s3:::payments-prod-invoices/2026/11/* in us-east-1",
        "adds s3:PutObjectTagging on arn:aws:s3:::payments-prod-invoices/2026/11/* in us-east-1",
    )
    table = "arn:aws:dynamodb:us-east-1:111111111111:table/payments-prod-ledger"
    assert adds({**WRITE_PAYMENTS, "resources": [table]}) == (
        f"adds dynamodb:PutItem on {table} in us-east-1",
        f"adds dynamodb:UpdateItem on {table} in us-east-1",
    )
    # delete includes write: everything beyond read is listed, destruction among it. (From
    # a record: opening a payments delete is refused on weekends by its change freeze.)
    objects = "arn:aws:s3:::payments-prod-invoices/2026/11/*"
    write = approvals.get(open_request(broker, WRITE_PAYMENTS))
    scope, _, _ = approvals.eligible(write)
    services = broker.services
    identity = services.verifier.verify(broker.token("payments-copilot"))
    grant = resolve(
        parse_request({**WRITE_PAYMENTS, "tier": "delete"}),
        services.scopes.current,
        identity,
        services.iam,
    ).grant
    delete = replace(write, tier="delete", grant=grant.canonical_json(), grant_sha256=grant.sha256)
    assert permission_difference(delete, scope, broker.services.iam) == (
        f"adds s3:DeleteObject on {objects} in us-east-1",
        f"adds s3:PutObject on {objects} in us-east-1",
        f"adds s3:PutObjectTagging on {objects} in us-east-1",
    )
    vault = adds(DELETE_LEDGER, LEDGER_AGENT)
    # Exactly the request's own paths: the token's policy is made for the request.
    assert "adds vault delete on secret/data/ledger/prod/obsolete-key" in vault
    assert not any(" read on " in line or " list on " in line for line in vault)
