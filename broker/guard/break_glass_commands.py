"""``broker break-glass ...``: emergency escalations approved by two people on the CLI.

``request`` opens a break-glass escalation for an agent with the first approval and prints
its request id; ``approve`` adds the second. Each records the OS user and host that ran it;
the same OS user approving twice is refused. The logic is in :mod:`broker.guard.break_glass`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broker.cli_options import config_option
from broker.guard.break_glass import BreakGlass, BreakGlassAsk, BreakGlassOutcome, current_operator

if TYPE_CHECKING:
    from broker.services import Services

CONFIG = config_option()
REASON = click.option(
    "--reason",
    required=True,
    help="Why this cannot wait: at least a sentence (recorded and sent with the alert).",
)
APPROVER = click.option("--approver", required=True, help="Your name among the approvers.")


@click.group("break-glass")
def break_glass() -> None:
    """Emergency access during a change freeze or a Slack outage (two people, loud)."""


def _services(config_path: Path | None) -> Services:
    """The broker's store, scopes and notifier (Slack when configured); no backends."""
    from broker.config import load_settings
    from broker.services import build_services
    from broker.wiring import build_notifier

    return build_services(load_settings(config_path), issuers={}, build_notifier=build_notifier)


def _report(outcome: BreakGlassOutcome) -> None:
    record = outcome.view.record
    if outcome.alert_failure:
        click.echo(
            f"warning: the alert could not be sent ({outcome.alert_failure}); "
            "tell the approvers another way. Break-glass goes on.",
            err=True,
        )
    if record.status == "approved":
        deadline = dt.datetime.fromtimestamp(record.collect_deadline or 0, dt.UTC)
        click.echo(
            f"Approved by {', '.join(outcome.view.approvers)}. {record.agent_subject} can "
            f"collect now with POST /v1/requests/{record.id}/credentials, until "
            f"{deadline:%Y-%m-%d %H:%M:%S} UTC; the credentials live "
            f"{record.duration_seconds // 60} min.",
            err=True,
        )
        return
    click.echo(
        f"{outcome.view.approvals_received} of {record.approvals_required} approvals. "
        "Another approver, as a different OS user, runs:\n"
        f"  broker break-glass approve {record.id} --approver NAME --reason '...'",
        err=True,
    )


@break_glass.command("request")
@CONFIG
@click.option("--agent", required=True, help="The agent to receive access: agent:NAME.")
@click.option("--service", required=True)
@click.option("--environment", required=True)
@click.option("--region", help="AWS region (required for the aws backend).")
@click.option("--tier", required=True, type=click.Choice(["write", "delete"]))
@click.option("--backend", required=True, type=click.Choice(["aws", "vault", "database"]))
@click.option("--resource", "resources", multiple=True, help="A resource (repeatable).")
@REASON
@APPROVER
def request_command(
    config_path: Path | None,
    agent: str,
    service: str,
    environment: str,
    region: str | None,
    tier: str,
    backend: str,
    resources: tuple[str, ...],
    reason: str,
    approver: str,
) -> None:
    """Open a break-glass escalation for AGENT with your approval; print its request id."""
    services = _services(config_path)
    try:
        outcome = BreakGlass.from_services(services).request(
            BreakGlassAsk(
                agent=agent,
                service=service,
                environment=environment,
                region=region,
                tier=tier,
                backend=backend,
                resources=resources,
                reason=reason,
            ),
            approver,
            current_operator(),
        )
    finally:
        services.close()
    click.echo(outcome.view.record.id)
    _report(outcome)


@break_glass.command("approve")
@CONFIG
@click.argument("request_id")
@REASON
@APPROVER
def approve_command(config_path: Path | None, request_id: str, reason: str, approver: str) -> None:
    """Add your approval to break-glass request REQUEST_ID (as a different OS user)."""
    services = _services(config_path)
    try:
        outcome = BreakGlass.from_services(services).approve(
            request_id, approver, reason, current_operator()
        )
    finally:
        services.close()
    click.echo(f"{outcome.view.record.id} {outcome.view.record.status}")
    _report(outcome)
