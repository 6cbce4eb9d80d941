"""A broker for guardrail tests: one scope of its own ("shop"), fake backends, an injected
clock and a notifier that remembers what it was asked to say."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from broker.app import create_app
from broker.guard.break_glass import Operator
from broker.notify.base import ApprovalNotice, NotificationFailed
from broker.services import build_services
from broker.store.sql import SqlStore
from tests.fixtures.broker import Broker, FakeClock, FakeIssuer
from tests.fixtures.broker import test_settings as broker_settings

AGENT = "shop-bot"
OTHER_AGENT = "other-bot"

# Write: alice or bob, 1 approval (pending up to a day), at most 3 resources, 3 requests an
# hour.
# Delete: 2 of carol, dave, erin (group sre-oncall), a 10 min delay, at most 2 resources.
SHOP_SCOPE = """\
apiVersion: broker/v1
kind: Scope
metadata:
  service: shop
  description: guardrail tests
requesters:
  - subject: agent:shop-bot
  - subject: agent:other-bot
environments:
  prod:
    aws:
      account: "111111111111"
      regions: [us-east-1]
      roles:
        read: "arn:aws:iam::${account}:role/broker/shop-prod-read"
        write: "arn:aws:iam::${account}:role/broker/shop-prod-write"
        delete: "arn:aws:iam::${account}:role/broker/shop-prod-delete"
    vault:
      kv:
        mount: secret
        paths: ["shop/${env}/*"]
    database:
      connection: shop-prod
      objects: [shop.orders, reports.*]
      roles:
        read: shop-prod-read
        write: shop-prod-write
        delete: shop-prod-delete
tiers:
  read:
    ttl: 1h
    aws:
      - actions: [s3:GetObject]
        resources: ["arn:aws:s3:::shop-${env}-data/*"]
      - actions: [dynamodb:GetItem]
        resources: ["arn:aws:dynamodb:${region}:${account}:table/shop-${env}-orders"]
  write:
    ttl: 30m
    aws:
      - actions: [s3:PutObject]
        resources: ["arn:aws:s3:::shop-${env}-data/*"]
      - actions: [dynamodb:PutItem]
        resources: ["arn:aws:dynamodb:${region}:${account}:table/shop-${env}-orders"]
    approval:
      approvers: [alice, bob]
      required: 1
      pending_expiry: 1d
    max_resources: 3
    rate_limit: 3/h
  delete:
    ttl: 15m
    aws:
      - actions: [s3:DeleteObject]
        resources: ["arn:aws:s3:::shop-${env}-data/*"]
    approval:
      groups: [sre-oncall]
      required: 2
      delay: 10m
    max_resources: 2
    rate_limit: 50/d
"""

READ: dict[str, Any] = {
    "service": "shop",
    "environment": "prod",
    "region": "us-east-1",
    "tier": "read",
    "backend": "aws",
}
WRITE: dict[str, Any] = {
    **READ,
    "tier": "write",
    "resources": ["arn:aws:s3:::shop-prod-data/exports/today.csv"],
    "justification": "re-upload today's export",
}
DELETE: dict[str, Any] = {
    **READ,
    "tier": "delete",
    "resources": ["arn:aws:s3:::shop-prod-data/exports/broken.csv"],
    "justification": "remove the corrupt export",
}


def write_scope(directory: Path, freezes: str = "") -> None:
    """Write the shop scope (with ``freezes``, YAML list items) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    text = SHOP_SCOPE
    if freezes:
        text += "freezes:\n" + textwrap.indent(textwrap.dedent(freezes), "  ")
    (directory / "shop.yaml").write_text(text)


def epoch(text: str, zone: str = "UTC", fold: int = 0) -> float:
    """The instant of a wall-clock time in a zone: epoch("2027-03-14T03:00", "America/New_York")."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp()


@dataclass
class RecordingNotifier:
    """A Notifier that remembers every call; alerts can be made to fail like a Slack outage."""

    opened: list[ApprovalNotice] = field(default_factory=list)
    updated: list[tuple[str, str]] = field(default_factory=list)
    alerts: list[tuple[str, list[str]]] = field(default_factory=list)
    fail_alerts: bool = False

    def request_opened(self, notice: ApprovalNotice) -> Mapping[str, Any]:
        self.opened.append(notice)
        return {}

    def request_updated(
        self, notice: ApprovalNotice, status: str, detail: str, handle: Mapping[str, Any]
    ) -> None:
        self.updated.append((notice.request_id, status))

    def alert(self, text: str, evidence: Sequence[str] = ()) -> None:
        if self.fail_alerts:
            raise NotificationFailed("slack alert failed: ratelimited")
        self.alerts.append((text, list(evidence)))


def guard_broker(
    tmp_path: Path,
    freezes: str = "",
    store: SqlStore | None = None,
    notifier: RecordingNotifier | None = None,
    at: float | None = None,
    **settings_changes: Any,
) -> tuple[Broker, RecordingNotifier]:
    """A broker serving only the shop scope, its clock at ``at`` (default: now)."""
    write_scope(tmp_path / "scopes", freezes)
    clock = FakeClock(at)
    settings = broker_settings(tmp_path, **settings_changes)
    issuers = {name: FakeIssuer(name, clock) for name in ("aws", "vault", "database")}
    notifier = notifier or RecordingNotifier()
    services = build_services(
        settings, clock=clock, issuers=issuers, store=store, notifier=notifier
    )
    return Broker(create_app(services=services), services, clock, issuers), notifier


def operator(login: str, host: str = "bastion-1") -> Operator:
    return Operator(login=login, account=login, host=host)
