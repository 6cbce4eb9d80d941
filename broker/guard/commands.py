"""`broker revoke` and `broker unfreeze`: the kill switch on the command line."""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from broker.cli_options import config_option
from broker.guard.revocation import KillSwitch, RevokeTarget

EXIT_PARTIAL = 2
T = TypeVar("T")


def _with_kill_switch(config_path: Path | None, act: Callable[[KillSwitch], T]) -> T:
    """Build the services from the config, run ``act`` on the kill switch, close them."""
    from broker.config import load_settings
    from broker.services import build_services
    from broker.wiring import backend_factories

    services = build_services(load_settings(config_path), **backend_factories())
    try:
        return act(services.kill_switch)
    finally:
        services.close()


def _operator() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


TARGET_OPTIONS = [
    click.option("--agent", help="An agent's subject, e.g. agent:payments-copilot."),
    click.option("--service", help="A scope's service."),
    click.option("--environment", help="With --service: only this environment."),
    click.option("--request", "request_id", help="One request's credentials."),
    click.option("--all", "everything", is_flag=True, help="Everything the broker issued."),
    click.option("--reason", required=True, help="Why (recorded and sent in the alert)."),
    config_option(),
]


F = TypeVar("F", bound=Callable[..., Any])


def _with_target_options(function: F) -> F:
    for option in reversed(TARGET_OPTIONS):
        function = option(function)
    return function


@click.command("revoke")
@_with_target_options
def revoke_command(reason: str, config_path: Path | None, **target: Any) -> None:
    """Cut off an agent, a service, a request or everything: revoke, freeze, cancel, alert.

    Exits 0 when every backend confirmed, 2 when some could not be reached (run it again).
    """
    chosen = RevokeTarget(**target)
    report = _with_kill_switch(config_path, lambda k: k.revoke(chosen, _operator(), reason))
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(EXIT_PARTIAL)


@click.command("unfreeze")
@_with_target_options
def unfreeze_command(reason: str, config_path: Path | None, **target: Any) -> None:
    """Let a frozen agent or scope get credentials again (revoked ones stay revoked)."""
    chosen = RevokeTarget(**target)
    lifted = _with_kill_switch(config_path, lambda k: k.unfreeze(chosen, _operator(), reason))
    if lifted:
        click.echo(f"Unfrozen {chosen.describe()} ({lifted} freeze(s) lifted).")
    else:
        click.echo(f"{chosen.describe()} was not frozen.")
