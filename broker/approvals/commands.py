"""``broker approvals ...``: operator commands for escalations.

``broker approvals link`` prints an approver's personal link to a request, for sending by
mail (or for the dev stack, where no Slack is configured). The link is a capability: the
command refuses unknown approvers, anyone who may not approve that request (not listed for
its tier in the scope in force, or the requester itself), and requests that are no longer
open, and audits that a link was minted (never the link itself).
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import click

from broker.approvals.links import LinkSigner
from broker.approvals.rules import rule_in_force
from broker.audit.recorder import AuditRecorder
from broker.cli_options import config_option
from broker.config import load_settings
from broker.errors import BadRequest, Conflict, Forbidden, Gone, NotFound
from broker.ids import looks_like_request_id
from broker.keys import load_keys
from broker.policy.decision import OPEN_STATES, not_an_approver_of
from broker.policy.iam_actions import iam_database
from broker.scopes.lint_base import context_for
from broker.scopes.registry import load_scope_set
from broker.store.sql import SqlStore


@click.group("approvals")
def approvals() -> None:
    """Escalations: personal approval links."""


@approvals.command("link")
@click.option("--request", "request_id", required=True, help="The request id (req_...).")
@click.option("--approver", required=True, help="A configured approver's name.")
@config_option()
def link(request_id: str, approver: str, config_path: Path | None) -> None:
    """Print APPROVER's personal link to REQUEST (signed, expiring, usable once)."""
    settings = load_settings(config_path)
    if not looks_like_request_id(request_id):
        raise BadRequest("malformed request id (expected req_ and 26 letters or digits)")
    if config_path is None:
        raise BadRequest(
            "no broker config was given: approvers, scopes and the store are named there "
            "(--config FILE, or BROKER_CONFIG)"
        )
    if approver not in settings.approvers:
        raise BadRequest(f"'{approver}' is not an approver in {config_path}")
    store = SqlStore.from_url(settings.database_url)
    try:
        now = time.time()
        record = store.get_request(request_id)
        if record is None:
            raise NotFound(f"no request {request_id}")
        if record.status not in OPEN_STATES:
            raise Conflict(f"request {request_id} is already {record.status}")
        if record.status == "pending" and now >= record.expires_at:
            raise Gone(f"request {request_id} has expired")
        scopes = load_scope_set(
            settings.scopes_dir, context_for(iam_database(), settings)
        ).scope_set
        outsider = not_an_approver_of(
            record, settings.approvers[approver], rule_in_force(scopes, settings, record)
        )
        if outsider is not None:
            raise Forbidden(f"no link minted: {outsider.reason}")
        keys = load_keys(settings.state_dir)
        signer = LinkSigner(
            keys.link_secret, settings.public_url, settings.approvals.link_ttl_seconds
        )
        token = signer.mint(request_id, approver, now=now)
        AuditRecorder(store).record(
            "link",
            "minted",
            f"operator:{getpass.getuser()}",
            request_id=request_id,
            service=record.service,
            environment=record.environment,
            tier=record.tier,
            approver=approver,
            via="cli",
        )
    finally:
        store.close()
    click.echo(signer.url(token))
