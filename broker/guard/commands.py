"""`broker revoke` and `broker unfreeze`: the kill switch on the command line."""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from broker.guard.revocation import RevokeTarget

if TYPE_CHECKING:
    from broker.services import Services

EXIT_PARTIAL = 2


def _target(
    agent: str | None,
    service: str | None,
    environment: str | None,
    request_id: str | None,
    everything: bool,
) -> RevokeTarget:
    return RevokeTarget(
        agent=agent,
        service=service,
        environment=environment,
        request_id=request_id,
        everything=everything,
    )


def _services(config_path: Path | None) -> Services:
    from broker.config import load_settings
    from broker.services import build_services
    from broker.wiring import backend_factories

    return build_services(load_settings(config_path), **backend_factories())


def _operator() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


TARGET_OPTIONS = [
    click.option("--agent", help="An agent's subject, e.g. agent:payments-copilot."),
    click.option("--service", help="A scope's service."),
    click.option("--environment", help="With --service: only this environment."),
    click.option("--request", "request_id", help="One request's credentials."),
    click.option("--all", "everything", is_flag=True, help="Everything the broker issued."),
    click.option("--reason", required=True, help="Why (recorded and sent in the alert)."),
    click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="BROKER_CONFIG",
    ),
]


F = TypeVar("F", bound=Callable[..., Any])


def _with_target_options(function: F) -> F:
    for option in reversed(TARGET_OPTIONS):
        function = option(function)
    return function


@click.command("revoke")
@_with_target_options
def revoke_command(
    agent: str | None,
    service: str | None,
    environment: str | None,
    request_id: str | None,
    everything: bool,
    reason: str,
    config_path: Path | None,
) -> None:
    """Cut off an agent, a service, a request or everything: revoke, freeze, cancel, alert.

    Exits 0 when every backend confirmed, 2 when some could not be reached (run it again).
    """
    target = _target(agent, service, environment, request_id, everything)
    services = _services(config_path)
    try:
        report = services.kill_switch.revoke(target, _operator(), reason)
    finally:
        services.close()
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(EXIT_PARTIAL)


@click.command("unfreeze")
@_with_target_options
def unfreeze_command(
    agent: str | None,
    service: str | None,
    environment: str | None,
    request_id: str | None,
    everything: bool,
    reason: str,
    config_path: Path | None,
) -> None:
    """Let a frozen agent or scope get credentials again (revoked ones stay revoked)."""
    target = _target(agent, service, environment, request_id, everything)
    services = _services(config_path)
    try:
        lifted = services.kill_switch.unfreeze(target, _operator(), reason)
    finally:
        services.close()
    if lifted:
        click.echo(f"Unfrozen {target.describe()} ({lifted} freeze(s) lifted).")
    else:
        click.echo(f"{target.describe()} was not frozen.")
