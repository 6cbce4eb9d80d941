"""`broker revoke`, `broker unfreeze` and `broker freezes`: the kill switch on the command
line, and what is frozen now; `broker reconcile`: one pass of the reconciler, now."""

from __future__ import annotations

import getpass
import math
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from broker.cli_options import Finished, config_option
from broker.guard.revocation import RevokeTarget

if TYPE_CHECKING:
    from broker.guard.revoke_wiring import Revoker
    from broker.services import Services

EXIT_PARTIAL = 2
T = TypeVar("T")


def _with_services(config_path: Path | None, act: Callable[[Services], T]) -> T:
    """Build the services from the config, run ``act`` on them, close them."""
    from broker.config import load_settings
    from broker.services import build_services
    from broker.wiring import backend_factories

    services = build_services(load_settings(config_path), **backend_factories())
    try:
        return act(services)
    finally:
        services.close()


def _with_revoker(config_path: Path | None, act: Callable[[Revoker], T]) -> T:
    """The kill switch alone (a start-up light enough for an incident), as ``act`` uses it."""
    from broker.config import load_settings
    from broker.guard.revoke_wiring import build_revoker

    revoker = build_revoker(load_settings(config_path))
    try:
        return act(revoker)
    finally:
        revoker.close()


def _operator() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


REVOKE_OPTIONS = [
    click.option(
        "--agent",
        help="Cut off this agent: agent:NAME for the broker's own (agent:payments-copilot), "
        "ISSUER:SUBJECT for another issuer's.",
    ),
    click.option("--service", help="Cut off every agent's credentials for this scope."),
    click.option("--environment", help="With --service: only this environment."),
    click.option("--request", "request_id", help="Revoke only this request's credentials."),
    click.option("--all", "everything", is_flag=True, help="Everything the broker issued."),
    click.option("--reason", required=True, help="Why (recorded and sent in the alert)."),
    config_option(),
]
UNFREEZE_OPTIONS = [
    click.option(
        "--agent",
        help="Lift the freeze on this agent (agent:NAME, or ISSUER:SUBJECT for another issuer's).",
    ),
    click.option("--service", help="Lift the freeze on this scope."),
    click.option("--environment", help="With --service: the freeze on this environment."),
    click.option(
        "--all", "everything", is_flag=True, help="Lift the freeze on everything (revoke --all)."
    ),
    click.option("--reason", required=True, help="Why it may resume (recorded in the audit)."),
    config_option(),
]


F = TypeVar("F", bound=Callable[..., Any])


def _with(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@click.command("revoke")
@_with(REVOKE_OPTIONS)
def revoke_command(reason: str, config_path: Path | None, **target: Any) -> Finished:
    """Cut off an agent, a service, a request or everything: revoke, freeze, cancel, alert.

    Exits 0 when every backend confirmed, 2 when some could not be reached (run it again).
    """
    chosen = RevokeTarget(**target)
    report = _with_revoker(config_path, lambda r: r.revoke(chosen, _operator(), reason))
    for line in report.lines():
        click.echo(line)
    return Finished(0 if report.ok else EXIT_PARTIAL)


@click.command("unfreeze")
@_with(UNFREEZE_OPTIONS)
def unfreeze_command(reason: str, config_path: Path | None, **target: Any) -> None:
    """Lift a freeze (from `broker revoke` or the circuit breaker): the agent or scope gets
    new credentials again. Revoked credentials stay revoked. `broker freezes` lists the
    freezes in force."""
    chosen = RevokeTarget(**target)
    done = _with_revoker(config_path, lambda r: r.kill_switch.unfreeze(chosen, _operator(), reason))
    if not done.lifted:
        click.echo(f"{chosen.describe()} was not frozen.")
        return
    click.echo(f"Unfrozen {chosen.describe()} ({done.lifted} freeze(s) lifted).")
    wait = done.effective_at - time.time()
    if wait > 0:
        when = time.strftime("%H:%M:%S UTC", time.gmtime(math.ceil(done.effective_at)))
        click.echo(
            f"  effective at {when} (in {math.ceil(wait)} s): AWS sessions issued before the "
            "revocation's cut-off would be denied, so nothing is issued until then."
        )


@click.command("freezes")
@config_option()
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def freezes_command(config_path: Path | None, as_json: bool) -> None:
    """What is frozen now and why: kill-switch and circuit-breaker freezes (with the command
    that lifts each), and the scopes' change-freeze windows in force."""
    import json
    import time

    from broker.config import load_settings
    from broker.guard.freeze_list import as_dict, list_freezes, render
    from broker.policy.iam_actions import iam_database
    from broker.scopes.lint import LintContext
    from broker.scopes.registry import load_scope_set
    from broker.store.sql import SqlStore

    settings = load_settings(config_path)
    now = time.time()
    store = SqlStore.from_url(settings.database_url)
    try:
        frozen = store.active_freezes(now)
    finally:
        store.close()
    scopes = load_scope_set(settings.scopes_dir, LintContext(iam=iam_database()))
    listing = list_freezes(frozen, scopes.scope_set.scopes.values(), now)
    if as_json:
        click.echo(json.dumps(as_dict(listing), indent=2, sort_keys=True))
        return
    for line in render(listing, now):
        click.echo(line)


@click.command("reconcile")
@config_option()
def reconcile_command(config_path: Path | None) -> None:
    """Revoke what was minted under a record never completed (a replica died mid-issuance)
    and delete request documents whose credential ended; `broker serve` does this at start
    and every limits.reconcile_interval. Exits 2 when something could not be reached."""
    report = _with_services(config_path, lambda services: services.reconciler.run())
    click.echo(f"orphans revoked: {len(report.orphans_revoked)}")
    for request_id in report.orphans_revoked:
        click.echo(f"  {request_id}")
    click.echo(f"request documents deleted: {len(report.cleaned)}")
    for error in report.errors:
        click.echo(f"  UNREACHED: {error}")
    if report.errors:
        sys.exit(EXIT_PARTIAL)
