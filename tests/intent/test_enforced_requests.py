"""Intents through the whole broker on the local AWS stand-in (moto with AWS's policy
evaluation): the agent posts a plan, humans approve it (in Chromium where the page matters),
and the collected session can do exactly what the plan does; the impact approvers read is
measured with the read tier on the real bucket."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from broker.app import create_app
from broker.apply.command import apply_scopes
from broker.config import AwsSettings
from broker.issuers.aws_accounts import AwsAccounts
from broker.issuers.aws_sts import StsIssuer
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import load_scope_set
from broker.services import build_services
from tests.approvals.flows import approve_via_page, collect, link_token
from tests.fixtures.backends import FAST_RETRY
from tests.fixtures.broker import Broker, FakeClock
from tests.fixtures.broker import test_settings as broker_settings
from tests.fixtures.browser import LiveServer
from tests.fixtures.moto import ACCOUNT, Moto, denied
from tests.intent.support import ACCOUNT as SUPPORT_ACCOUNT
from tests.intent.support import REGION, acme_data, fixture, plan_request
from tests.scopes.factory import write_scope

CHANGE_SET_READS = [
    "cloudformation:DescribeChangeSet",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
]


@dataclass
class Stack:
    """A broker over HTTP whose STS issuer and impact probes reach the AWS stand-in."""

    broker: Broker
    moto: Moto
    name: str  # the scope's service, also the prefix of its buckets and tables
    agent: str

    def plan(self, fixture_name: str) -> dict[str, Any]:
        text = json.dumps(fixture(fixture_name)).replace("acme-prod", f"{self.name}-prod")
        text = text.replace(SUPPORT_ACCOUNT, ACCOUNT)
        plan: dict[str, Any] = json.loads(text)
        return plan

    def request(self, intent: dict[str, Any], tier: str = "write") -> dict[str, Any]:
        return {**plan_request({}, tier=tier, service=self.name), "intent": intent}

    def post(self, body: dict[str, Any]) -> Any:
        return self.broker.post("/v1/credentials", body, agent=self.agent)

    def client(self, issued: dict[str, str], service: str, region: str = REGION) -> Any:
        return self.moto.agent_client(issued, service, region)

    def admin(self, service: str) -> Any:
        return self.moto.client(service, self.moto.admin_key)


@pytest.fixture()
def stack(tmp_path: Path, moto: Moto, live_server: LiveServer) -> Iterator[Stack]:
    name = f"ac{secrets.token_hex(3)}"
    text = json.dumps(acme_data()).replace("acme", name).replace(SUPPORT_ACCOUNT, ACCOUNT)
    data = json.loads(text)
    env = data["environments"]["prod"]
    del env["vault"], env["database"]  # AWS only: no Vault here
    for tier, arn in env["aws"]["roles"].items():
        env["aws"]["roles"][tier] = arn.replace(":role/", ":role/broker/")
    stacks = [f"arn:aws:cloudformation:${{region}}:${{account}}:stack/{name}-${{env}}-*/*"]
    data["tiers"]["read"]["aws"].append(
        {"actions": list(CHANGE_SET_READS), "resources": list(stacks)}
    )
    data["tiers"]["write"]["aws"].append(
        {"actions": ["cloudformation:ExecuteChangeSet"], "resources": list(stacks)}
    )
    scopes = tmp_path / "scopes"
    scopes.mkdir()
    write_scope(scopes, data, f"{name}.yaml")
    loaded = load_scope_set(scopes, LintContext(iam=iam_database()))
    assert not loaded.problems, loaded.problems
    sts = StsIssuer(moto.session(), endpoint_url=moto.url, retry=FAST_RETRY)
    lines: list[str] = []
    apply_scopes(loaded.scope_set, AwsAccounts(sts), None, True, lines.append)
    assert not [line for line in lines if line.startswith("problem")], lines
    settings = broker_settings(
        tmp_path, public_url=live_server.url, aws=AwsSettings(endpoint_url=moto.url)
    )
    clock = FakeClock()
    services = build_services(settings, clock=clock, issuers={"aws": sts})
    live_server.app = create_app(services=services)
    yield Stack(Broker(live_server.app, services, clock, {"aws": sts}), moto, name, name)
    services.close()


def opened(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    response = stack.post(body)
    assert response.status_code == 202, response.get_json()
    answer: dict[str, Any] = response.get_json()
    return answer


def approve(stack: Stack, request_id: str, *approvers: str) -> None:
    for approver in approvers:
        page = approve_via_page(stack.broker.client, link_token(stack.broker, request_id, approver))
        assert page.status_code == 200, page.get_data(as_text=True)


def collected(stack: Stack, request_id: str) -> dict[str, str]:
    response = collect(stack.broker, request_id, agent=stack.agent)
    assert response.status_code == 200, response.get_json()
    issued: dict[str, str] = response.get_json()["credentials"]
    return issued


def test_a_plan_updating_one_object_yields_a_session_for_that_object_only(stack: Stack) -> None:
    bucket = f"{stack.name}-prod-docs"
    admin = stack.admin("s3")
    admin.create_bucket(Bucket=bucket)
    for key in ("templates/invoice.html", "templates/receipt.html"):
        admin.put_object(Bucket=bucket, Key=key, Body=b"v1")
    answer = opened(stack, stack.request({"terraform_plan": stack.plan("plan_s3_object_update")}))
    assert answer["intent"]["tier"] == "write"
    approve(stack, answer["request_id"], "alice")
    s3 = stack.client(collected(stack, answer["request_id"]), "s3")
    key = "templates/invoice.html"
    s3.put_object(Bucket=bucket, Key=key, Body=b"v2")  # what the plan does
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"v2"  # its read-back
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="templates/receipt.html", Body=b"x"))
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="templates/receipt.html"))
    assert denied(lambda: s3.delete_object(Bucket=bucket, Key=key))
    assert denied(lambda: s3.list_objects_v2(Bucket=bucket))
    assert denied(lambda: s3.delete_bucket(Bucket=bucket))


def test_a_replacement_needs_two_approvers_and_the_delay_and_its_page_says_so_first(
    stack: Stack, browser: WebDriver
) -> None:
    table, other = f"{stack.name}-prod-ledger", f"{stack.name}-prod-other"
    dynamodb_admin = stack.admin("dynamodb")
    for name in (table, other):
        dynamodb_admin.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "entry_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "entry_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    plan = stack.plan("plan_dynamodb_replace")
    answer = opened(stack, stack.request({"terraform_plan": plan}, tier="write"))
    assert answer["intent"]["replacements"] == ["aws_dynamodb_table.ledger"]
    assert (answer["intent"]["tier"], answer["approvals_required"]) == ("delete", 2)
    request_id = answer["request_id"]

    # What alice's browser shows, before anything else: the replacement.
    browser.get(stack.broker.services.links.url(link_token(stack.broker, request_id, "alice")))
    heading = browser.find_element(By.TAG_NAME, "h1")
    first = browser.find_element(By.CSS_SELECTOR, "#replacements li")
    assert first.text == "REPLACES aws_dynamodb_table.ledger: its data will be lost"
    after_heading = browser.find_elements(By.XPATH, "//h1/following::*[normalize-space(text())]")
    assert after_heading[0].text == first.text, [e.text for e in after_heading[:3]]
    assert (
        heading.location["y"]
        < first.location["y"]
        < browser.find_element(By.ID, "agent").location["y"]
    )
    assert answer["intent"]["sha256"] in browser.find_element(By.ID, "intent-hash").text
    browser.find_element(By.ID, "approve").click()

    # One approval is not enough; two are, then the delay runs.
    assert stack.broker.services.approvals.get(request_id).status == "pending"
    approve(stack, request_id, "bob")
    early = collect(stack.broker, request_id, agent=stack.agent)
    assert early.status_code == 409, early.get_json()
    stack.broker.clock.advance(600)
    dynamodb = stack.client(collected(stack, request_id), "dynamodb")
    assert denied(lambda: dynamodb.delete_table(TableName=other))
    assert denied(lambda: dynamodb.put_item(TableName=table, Item={"entry_id": {"S": "1"}}))
    dynamodb.delete_table(TableName=table)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "account_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def wait_for_impact(stack: Stack, request_id: str) -> list[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        impact = stack.broker.services.approvals.get(request_id).impact
        if impact.get("status") == "done":
            return list(impact["lines"])
        time.sleep(0.1)
    raise AssertionError("the impact was never measured")


@pytest.mark.parametrize("count", [0, 7, 1243])
def test_the_impact_on_a_prefix_counts_its_objects(stack: Stack, count: int) -> None:
    bucket = f"{stack.name}-prod-docs"
    admin = stack.admin("s3")
    admin.create_bucket(Bucket=bucket)
    for n in range(count):
        admin.put_object(Bucket=bucket, Key=f"tmp/{n:05d}.csv", Body=b"x" * 1000)
    admin.put_object(Bucket=bucket, Key="keep/report.csv", Body=b"not under tmp/")
    intent = {
        "operations": [{"action": "s3:DeleteObject", "resource": f"arn:aws:s3:::{bucket}/tmp/*"}]
    }
    started = time.monotonic()
    answer = opened(stack, stack.request(intent))
    assert time.monotonic() - started < 5  # the agent does not wait for the measurement
    lines = wait_for_impact(stack, answer["request_id"])
    size = f"{count * 1000 / 1000:.1f} kB" if count else "0 B"
    if count >= 1000:
        size = f"{count * 1000 / 1e6:.1f} MB"
    assert lines == [f"deletes up to {count:,} objects, {size}"], lines
    page = stack.broker.client.get(
        f"/approve/{link_token(stack.broker, answer['request_id'], 'alice')}"
    ).get_data(as_text=True)
    assert f"deletes up to {count:,} objects" in page
    [record] = [
        r
        for r in stack.broker.services.store.audit_records(request_id=answer["request_id"])
        if r.action == "impact"
    ]
    assert record.details["impact"] == lines


def queue_template(visibility: int) -> str:
    queue = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": visibility}}
    return json.dumps({"Resources": {"Events": queue}})


def change_set(stack: Stack, stack_name: str, name: str, visibility: int) -> dict[str, Any]:
    """A change set created by someone with the rights, described as the agent would send it."""
    cloudformation = stack.admin("cloudformation")
    made = cloudformation.create_change_set(
        StackName=stack_name,
        ChangeSetName=name,
        TemplateBody=queue_template(visibility),
        ChangeSetType="UPDATE",
    )
    described = cloudformation.describe_change_set(ChangeSetName=made["Id"])
    described.pop("ResponseMetadata")
    result: dict[str, Any] = json.loads(json.dumps(described, default=str))
    return result


def test_a_change_set_intent_executes_that_change_set_by_name_and_nothing_else(
    stack: Stack,
) -> None:
    stack_name = f"{stack.name}-prod-events"
    stack.admin("cloudformation").create_stack(
        StackName=stack_name, TemplateBody=queue_template(30)
    )
    described = change_set(stack, stack_name, "longer-visibility", 60)
    change_set(stack, stack_name, "other-change", 90)
    answer = opened(stack, stack.request({"cloudformation_change_set": described}))
    assert answer["intent"]["tier"] == "write"
    approve(stack, answer["request_id"], "alice")
    cloudformation = stack.client(collected(stack, answer["request_id"]), "cloudformation")
    assert denied(
        lambda: cloudformation.execute_change_set(
            ChangeSetName="other-change", StackName=stack_name
        )
    )
    assert denied(lambda: cloudformation.delete_stack(StackName=stack_name))
    cloudformation.execute_change_set(ChangeSetName="longer-visibility", StackName=stack_name)
    assert cloudformation.describe_stacks(StackName=stack_name)["Stacks"]


def test_a_change_set_replaced_under_the_same_name_after_approval_is_not_executed(
    stack: Stack,
) -> None:
    stack_name = f"{stack.name}-prod-events"
    admin = stack.admin("cloudformation")
    admin.create_stack(StackName=stack_name, TemplateBody=queue_template(30))
    described = change_set(stack, stack_name, "tune", 60)
    answer = opened(stack, stack.request({"cloudformation_change_set": described}))
    approve(stack, answer["request_id"], "alice")
    admin.delete_change_set(ChangeSetName="tune", StackName=stack_name)
    change_set(stack, stack_name, "tune", 900)  # same name, another change
    response = collect(stack.broker, answer["request_id"], agent=stack.agent)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_intent"
    assert "not the one this intent describes" in response.get_json()["message"]
    # Nothing was issued under the request, and it can still not be collected.
    assert stack.broker.services.store.issued_for_request(answer["request_id"]) == []
    assert stack.broker.services.approvals.get(answer["request_id"]).status == "approved"
