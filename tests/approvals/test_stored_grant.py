"""The grant is fixed when the request opens: approvers see it, collection issues exactly it
(or less, if the scope was narrowed), and a stricter approval rule sends it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from broker.guard.revocation import RevokeTarget
from broker.issuers.aws_accounts import AwsAccounts
from broker.notify.base import ApprovalNotice
from broker.notify.slack import summary_blocks
from broker.store import tables as t
from tests.approvals.flows import collect, link_token, open_request, status
from tests.fixtures.backends import Backends, shop_scope
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.moto import denied

AGENT = "shop-bot"


def edit_scope(broker: Broker, old: str, new: str) -> None:
    """Change the scope file and let the broker reload it (a merged scope change)."""
    [path] = list(broker.services.settings.scopes_dir.glob("*.yaml"))
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    assert broker.services.scopes.reload().applied


@pytest.fixture()
def real(tmp_path: Path, backends: Backends) -> Broker:
    backends.apply(yes=True)
    s3 = backends.admin("s3")
    s3.create_bucket(Bucket=f"{backends.name}-prod-data")
    dynamodb = backends.admin("dynamodb")
    dynamodb.create_table(
        TableName=f"{backends.name}-prod-orders",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    return make_broker(tmp_path, real_issuers=backends.issuers)


def write_body(backends: Backends, *resources: str) -> dict[str, Any]:
    return {
        "service": backends.name,
        "environment": "prod",
        "region": "us-east-1",
        "tier": "write",
        "backend": "aws",
        "resources": list(resources),
        "justification": "store the nightly report",
    }


def approved(broker: Broker, body: dict[str, Any], approvers: tuple[str, ...] = ("alice",)) -> str:
    request_id = open_request(broker, body, agent=AGENT)
    for name in approvers:
        broker.services.approvals.decide(request_id, name, "approve", via="page")
    return request_id


def writes_but_cannot_tag(backends: Backends, credentials: dict[str, str]) -> bool:
    """The approved write works; tagging, added to the tier after approval, is refused."""
    s3 = backends.moto.agent_client(credentials, "s3")
    bucket = f"{backends.name}-prod-data"
    s3.put_object(Bucket=bucket, Key="reports/r1.csv", Body=b"x")
    return denied(
        lambda: s3.put_object_tagging(
            Bucket=bucket, Key="reports/r1.csv", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
        )
    )


def test_a_tier_widened_after_approval_gives_the_agent_nothing_more(
    real: Broker, backends: Backends
) -> None:
    objects = f"arn:aws:s3:::{backends.name}-prod-data/reports/*"
    request_id = approved(real, write_body(backends, objects))
    # Merged during the delay: the write tier now also tags objects (and the role allows it).
    edit_scope(real, "- actions: [s3:PutObject]", "- actions: [s3:PutObject, s3:PutObjectTagging]")
    backends.apply(yes=True)
    response = collect(real, request_id, agent=AGENT)
    assert response.status_code == 200, response.json
    assert writes_but_cannot_tag(backends, response.json["credentials"])
    record = real.services.store.get_request(request_id)
    assert record is not None and record.grant_sha256
    [collected] = [
        r for r in real.services.store.audit_records(request_id=request_id) if r.action == "collect"
    ]
    assert collected.details["grant_sha256"] == record.grant_sha256
    assert collected.details["issued_sha256"] == record.grant_sha256  # exactly what was approved


def test_a_change_that_widens_the_tier_and_tightens_its_rule_grants_nothing_unseen(
    real: Broker, backends: Backends
) -> None:
    """One merge widens the write tier and asks for a second approver: the request goes
    back to pending; once approved again, the agent still gets only the stored grant."""
    objects = f"arn:aws:s3:::{backends.name}-prod-data/reports/*"
    request_id = approved(real, write_body(backends, objects))
    edit_scope(real, "- actions: [s3:PutObject]", "- actions: [s3:PutObject, s3:PutObjectTagging]")
    edit_scope(real, WRITE_RULE, "approvers: [alice, bob]\n      required: 2")
    backends.apply(yes=True)
    refused = collect(real, request_id, agent=AGENT)
    assert refused.status_code == 409 and "2 approvals instead of 1" in refused.json["message"]
    page = real.client.get(f"/approve/{link_token(real, request_id, 'bob')}")
    assert "PutObjectTagging" not in page.get_data(as_text=True).split('id="grant"', 1)[1]
    real.services.approvals.decide(request_id, "bob", "approve", via="page")
    response = collect(real, request_id, agent=AGENT)
    assert response.status_code == 200, response.json
    assert writes_but_cannot_tag(backends, response.json["credentials"])


def test_a_tier_narrowed_after_approval_issues_the_intersection(
    real: Broker, backends: Backends
) -> None:
    table = f"arn:aws:dynamodb:us-east-1:123456789012:table/{backends.name}-prod-orders"
    objects = f"arn:aws:s3:::{backends.name}-prod-data/reports/*"
    request_id = approved(real, write_body(backends, objects, table))
    edit_scope(real, "- actions: [dynamodb:PutItem]", "- actions: [dynamodb:DescribeTable]")
    response = collect(real, request_id, agent=AGENT)
    assert response.status_code == 200, response.json
    credentials = response.json["credentials"]
    s3 = backends.moto.agent_client(credentials, "s3")
    s3.put_object(Bucket=f"{backends.name}-prod-data", Key="reports/r2.csv", Body=b"x")
    dynamodb = backends.moto.agent_client(credentials, "dynamodb")
    assert denied(
        lambda: dynamodb.put_item(TableName=f"{backends.name}-prod-orders", Item={"id": {"S": "1"}})
    )
    [collected] = [
        r for r in real.services.store.audit_records(request_id=request_id) if r.action == "collect"
    ]
    assert collected.details["narrowed"] is True
    assert collected.details["issued_sha256"] != collected.details["grant_sha256"]


def test_the_revocation_names_the_hash_of_the_grant_issued(
    real: Broker, backends: Backends
) -> None:
    objects = f"arn:aws:s3:::{backends.name}-prod-data/reports/*"
    request_id = approved(real, write_body(backends, objects))
    assert collect(real, request_id, agent=AGENT).status_code == 200
    real.services.kill_switch.accounts = AwsAccounts(backends.sts)
    report = real.services.kill_switch.revoke(RevokeTarget(request_id=request_id), "ops", "done")
    assert report.ok and report.backends["aws"].revoked == 1, report.lines()
    steps = {
        (r.action, r.outcome): r.details.get("grant_sha256")
        for r in real.services.store.audit_records(request_id=request_id)
    }
    record = real.services.store.get_request(request_id)
    assert record is not None and record.grant_sha256
    assert steps[("revoke", "revoked")] == steps[("issue", "issued")] == record.grant_sha256
    [issued] = real.services.store.issued_for_request(request_id)
    assert issued.grant_sha256 == record.grant_sha256


# -- the approval rule in force at collection ---------------------------------------------


@pytest.fixture()
def shop(tmp_path: Path) -> Broker:
    """The shop scope (write: alice or bob, 1 approval, no delay) on fake backends."""
    scopes = tmp_path / "scopes"
    scopes.mkdir()
    (scopes / "shop.yaml").write_text(shop_scope("shop", None, None))
    return make_broker(tmp_path)


def shop_write() -> dict[str, Any]:
    return {
        "service": "shop",
        "environment": "prod",
        "region": "us-east-1",
        "tier": "write",
        "backend": "aws",
        "resources": ["arn:aws:s3:::shop-prod-data/reports/r1.csv"],
    }


WRITE_RULE = "approvers: [alice, bob]\n      required: 1"


def test_more_approvers_required_since_approval_sends_it_back_to_pending(shop: Broker) -> None:
    request_id = approved(shop, shop_write())
    edit_scope(shop, WRITE_RULE, "approvers: [alice, bob]\n      required: 2")
    refused = collect(shop, request_id, agent=AGENT)
    assert refused.status_code == 409 and refused.json["error"] == "not_ready", refused.json
    assert "became stricter" in refused.json["message"]
    assert "2 approvals instead of 1" in refused.json["message"]
    state = status(shop, request_id, agent=AGENT)
    assert (state["status"], state["approvals_required"]) == ("pending", 2)
    shop.services.approvals.decide(request_id, "bob", "approve", via="page")
    assert collect(shop, request_id, agent=AGENT).status_code == 200


def test_other_approvers_since_approval_make_earlier_approvals_not_count(shop: Broker) -> None:
    request_id = approved(shop, shop_write())  # by alice
    edit_scope(shop, WRITE_RULE, "approvers: [bob, carol]\n      required: 1")
    refused = collect(shop, request_id, agent=AGENT)
    assert refused.status_code == 409 and "alice may no longer approve" in refused.json["message"]
    assert status(shop, request_id, agent=AGENT)["status"] == "pending"
    shop.services.approvals.decide(request_id, "carol", "approve", via="page")
    assert collect(shop, request_id, agent=AGENT).status_code == 200


def test_sets_regrouped_since_approval_need_each_set_met_again(shop: Broker) -> None:
    """Same count, same people still eligible, but now one approval must come from carol:
    alice's and bob's two approvals no longer meet the rule."""
    edit_scope(shop, WRITE_RULE, "approvers: [alice, bob]\n      required: 2")
    request_id = approved(shop, shop_write(), ("alice", "bob"))
    assert status(shop, request_id, agent=AGENT)["status"] == "approved"
    edit_scope(
        shop,
        "approvers: [alice, bob]\n      required: 2",
        "all_of:\n        - {approvers: [alice, bob], required: 1}\n"
        "        - {approvers: [carol], required: 1}",
    )
    refused = collect(shop, request_id, agent=AGENT)
    assert refused.status_code == 409 and refused.json["error"] == "not_ready", refused.json
    assert "no longer meet 1 of alice or bob and 1 of carol" in refused.json["message"]
    assert "waiting for 1 more of carol" in refused.json["message"]
    assert status(shop, request_id, agent=AGENT)["status"] == "pending"
    assert shop.issuers["aws"].calls == []
    shop.services.approvals.decide(request_id, "carol", "approve", via="page")
    assert collect(shop, request_id, agent=AGENT).status_code == 200


def test_a_longer_delay_since_approval_starts_over(shop: Broker) -> None:
    request_id = approved(shop, shop_write())
    edit_scope(shop, WRITE_RULE, WRITE_RULE + "\n      delay: 5m")
    refused = collect(shop, request_id, agent=AGENT)
    assert refused.status_code == 409 and "collectable in 300 s" in refused.json["message"]
    assert status(shop, request_id, agent=AGENT)["status"] == "approved"
    shop.clock.advance(301)
    assert collect(shop, request_id, agent=AGENT).status_code == 200


def test_a_looser_rule_does_not_lower_what_approvers_were_shown(shop: Broker) -> None:
    edit_scope(shop, WRITE_RULE, "approvers: [alice, bob]\n      required: 2")
    request_id = approved(shop, shop_write())  # alice: 1 of 2
    edit_scope(shop, "required: 2", "required: 1")
    assert collect(shop, request_id, agent=AGENT).status_code == 409
    shop.services.approvals.decide(request_id, "bob", "approve", via="page")
    assert collect(shop, request_id, agent=AGENT).status_code == 200


def test_a_stricter_rule_applies_to_a_request_still_pending(shop: Broker) -> None:
    request_id = open_request(shop, shop_write(), agent=AGENT)
    edit_scope(shop, WRITE_RULE, "approvers: [alice, bob]\n      required: 2")
    view = shop.services.approvals.decide(request_id, "alice", "approve", via="page")
    assert (view.record.status, view.record.approvals_required) == ("pending", 2)
    # The agent polling it is told why it waits for more than it was first told.
    assert "became stricter since it was opened: 2 approvals instead of 1" in (
        status(shop, request_id, agent=AGENT)["reason"] or ""
    )


# -- the grant approvers see, and its hash everywhere ----------------------------------------


def test_approvers_see_the_exact_grant_and_its_hash(shop: Broker) -> None:
    request_id = open_request(shop, shop_write(), agent=AGENT)
    record = shop.services.store.get_request(request_id)
    assert record is not None and record.grant and record.grant_sha256
    page = shop.client.get(f"/approve/{link_token(shop, request_id, 'alice')}")
    html = page.get_data(as_text=True)
    assert record.grant_sha256 in html
    assert "arn:aws:s3:::shop-prod-data/reports/r1.csv" in html.split('id="grant"', 1)[1]
    notice = shop.services.approvals.notices.notice(
        record, shop.services.scopes.current.scopes["shop"], _rule(shop), 0
    )
    assert isinstance(notice, ApprovalNotice) and notice.grant_sha256 == record.grant_sha256
    assert record.grant_sha256[:12] in str(summary_blocks(notice))


def _rule(broker: Broker) -> Any:
    approval = broker.services.scopes.current.scopes["shop"].tiers["write"].approval
    assert approval is not None
    return approval


def test_the_hash_is_audited_at_every_step(shop: Broker) -> None:
    request_id = approved(shop, shop_write())
    assert collect(shop, request_id, agent=AGENT).status_code == 200
    record = shop.services.store.get_request(request_id)
    assert record is not None
    steps = {
        (r.action, r.outcome): r.details.get("grant_sha256")
        for r in shop.services.store.audit_records(request_id=request_id)
    }
    for step in (
        ("request", "pending"),
        ("approve", "recorded"),
        ("request", "approved"),
        ("collect", "collected"),
        ("issue", "issued"),
    ):
        assert steps[step] == record.grant_sha256, step


def test_a_stored_grant_changed_behind_the_approvers_back_is_not_issued(shop: Broker) -> None:
    request_id = approved(shop, shop_write())
    record = shop.services.store.get_request(request_id)
    assert record is not None and record.grant
    wider = record.grant.replace("reports/r1.csv", "*")
    with shop.services.store.db.tx() as connection:  # type: ignore[attr-defined]
        connection.execute(
            update(t.requests).where(t.requests.c.id == request_id).values(grant=wider)
        )
    refused = collect(shop, request_id, agent=AGENT)
    assert refused.status_code == 403 and "SHA-256" in refused.json["message"]
    assert shop.issuers["aws"].calls == []
