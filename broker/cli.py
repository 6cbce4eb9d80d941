"""The ``broker`` command: scope tooling, the service, and operator actions.

Subcommands live with the feature they drive; this module only assembles them. Every
command turns :class:`BrokerError` into a one-line message and a non-zero exit code; no
traceback reaches the terminal.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broker.cli_options import Finished, config_option, directory_option
from broker.errors import BrokerError, InvalidFileError

if TYPE_CHECKING:
    from broker.config import Settings

EXIT_PROBLEMS = 1
EXIT_DRIFT = 3  # `scopes apply --check`: the upstreams do not match the scopes


# Commands that live beside their feature, imported only when used: `broker creds` runs
# on every credential_process refresh and must not pay for the server's imports.
LAZY_COMMANDS = {
    "approvals": "broker.approvals.commands:approvals",
    "audit": "broker.audit.commands:audit",
    "break-glass": "broker.guard.break_glass_commands:break_glass",
    "creds": "broker.agent_cli:creds_command",
    "freezes": "broker.guard.commands:freezes_command",
    "mcp": "broker.agent_cli:mcp_command",
    "reconcile": "broker.guard.commands:reconcile_command",
    "revoke": "broker.guard.commands:revoke_command",
    "unfreeze": "broker.guard.commands:unfreeze_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is not None and cmd_name not in self.commands:
            module, _, attribute = target.partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Least-privilege, short-lived credentials for AI agents."""


def _scopes_context(config: Path | None) -> tuple[object, object]:
    from broker.config import load_settings
    from broker.policy.iam_actions import iam_database
    from broker.scopes.lint_base import context_for

    settings = load_settings(config) if config else None
    return settings, context_for(iam_database(), settings)


@cli.group()
def scopes() -> None:
    """Validate, plan and apply scope files."""


@scopes.command("validate")
@click.argument("path", type=click.Path(path_type=Path), default=Path("scopes"))
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Broker config, to check that approvers and groups exist.",
)
def scopes_validate(path: Path, config: Path | None) -> None:
    """Check every scope file under PATH; print file:line:column: reason per problem."""
    from broker.scopes.registry import default_workers, load_scope_set

    _, ctx = _scopes_context(config)
    result = load_scope_set(path, ctx, workers=default_workers())  # type: ignore[arg-type]
    for problem in result.problems:
        click.echo(str(problem))
    if result.problems:
        click.echo(f"{len(result.problems)} problem(s) in {result.files} file(s).", err=True)
        sys.exit(EXIT_PROBLEMS)
    click.echo(f"OK: {len(result.scope_set.scopes)} scope(s) in {result.files} file(s).")


@scopes.command("plan")
@click.argument("path", type=click.Path(path_type=Path), default=Path("scopes"))
@click.option("--json", "as_json", is_flag=True, help="Print the compiled documents as JSON.")
@click.option(
    "--against",
    metavar="DIR|GIT-REF",
    help="Print the change in granted permissions from this version to PATH.",
)
@click.option("--config", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def scopes_plan(path: Path, as_json: bool, against: str | None, config: Path | None) -> None:
    """Show what each tier of each environment grants, or what a change would grant."""
    from broker.policy.grants import diff_facts, scope_facts
    from broker.scopes.plan import checkout, render_changes, render_json, render_plan
    from broker.scopes.registry import default_workers, load_scope_set

    _, ctx = _scopes_context(config)
    result = load_scope_set(path, ctx, workers=default_workers())  # type: ignore[arg-type]
    if result.problems:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        click.echo("Refusing to plan scopes with problems (see above).", err=True)
        sys.exit(EXIT_PROBLEMS)
    scopes_now = list(result.scope_set.scopes.values())
    iam = ctx.iam  # type: ignore[attr-defined]
    if against is None:
        click.echo(
            render_json(scopes_now, iam)
            if as_json
            else _red_exceptions(render_plan(scopes_now, iam)),
            nl=False,
        )
        return
    with checkout(against, path) as old_path:
        old = load_scope_set(old_path, ctx)  # type: ignore[arg-type]
    if old.problems and old.files:
        click.echo(
            f"note: the version at '{against}' has {len(old.problems)} problem(s); "
            "its invalid scopes count as granting nothing",
            err=True,
        )
    changes = diff_facts(
        scope_facts(old.scope_set.scopes.values(), iam),
        scope_facts(scopes_now, iam),
    )
    click.echo(_red_exceptions(render_changes(changes)), nl=False)


def _red_exceptions(text: str) -> str:
    """Escalation exceptions stand out in red (on a terminal; click drops the color else)."""
    from broker.policy.grants import ESCALATION_MARK

    return "".join(
        click.style(line.rstrip("\n"), fg="red") + "\n" if ESCALATION_MARK in line else line
        for line in text.splitlines(keepends=True)
    )


@scopes.command("apply")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@config_option("The broker's YAML config.")
@click.option("--yes", is_flag=True, help="Apply the plan (without it nothing changes).")
@click.option(
    "--check",
    is_flag=True,
    help="Only say whether the upstreams match the scopes: exit 0 if they do, "
    f"{EXIT_DRIFT} if something is missing or different, 1 on problems.",
)
def scopes_apply(path: Path | None, config_path: Path | None, yes: bool, check: bool) -> None:
    """Write the compiled policies to IAM and Vault: the plan first, changes only with --yes.

    With --check, nothing changes: it lists what is missing upstream (roles not created yet,
    policies to write) and exits non-zero, for CI or before issuing from new scopes.
    """
    from broker.apply.command import apply_scopes
    from broker.apply.upstreams import HvacVaultManager
    from broker.config import load_settings
    from broker.policy.iam_actions import iam_database
    from broker.scopes.lint_base import context_for
    from broker.scopes.registry import default_workers, load_scope_set
    from broker.wiring import build_accounts, build_sts, build_vault_client

    settings = load_settings(config_path)
    ctx = context_for(iam_database(), settings)
    result = load_scope_set(path or settings.scopes_dir, ctx, workers=default_workers())
    if result.problems:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        click.echo("Refusing to apply scopes with problems (see above).", err=True)
        sys.exit(EXIT_PROBLEMS)
    if check and yes:
        raise BrokerError("--check changes nothing: use it without --yes")

    def out(line: str) -> None:
        if not (check and line.startswith("Nothing was changed.")):
            click.echo(line)

    client = build_vault_client(settings)
    outcome = apply_scopes(
        result.scope_set,
        build_accounts(settings, build_sts(settings)),
        HvacVaultManager(client) if client is not None else None,
        yes,
        out,
    )
    if check and outcome.ok and outcome.changes:
        missing = sum(1 for c in outcome.changes if c.kind == "create")
        click.echo(
            f"Out of date: {missing} missing upstream, {len(outcome.changes) - missing} to "
            "update. Credentials of these scopes fail until `broker scopes apply --yes`."
        )
        sys.exit(EXIT_DRIFT)
    if outcome.applied:
        _audit_apply(settings, outcome.applied, len(outcome.changes))
    if not outcome.ok:
        sys.exit(EXIT_PROBLEMS)


def _audit_apply(settings: Settings, applied: int, planned: int) -> None:
    from broker.audit.recorder import AuditRecorder
    from broker.store.sql import SqlStore

    store = SqlStore.from_url(settings.database_url)
    try:
        AuditRecorder(store).record(
            "scope_apply", "applied", "cli", applied=applied, planned=planned
        )
    finally:
        store.close()


@cli.command("dev")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    help="Port for the broker (another free port if it is taken).",
)
@directory_option("--scopes", "scopes_path", Path("scopes"))
@directory_option("--state", "state_dir", Path(".broker/dev"))
def dev_command(port: int, scopes_path: Path, state_dir: Path) -> None:
    """Run the whole stack locally: OpenBao, moto, the broker on SQLite, example scopes."""
    from broker.devstack.stack import run_dev
    from broker.logs import configure_logging

    configure_logging("WARNING")
    run_dev(scopes_path, state_dir, port, lambda line: click.echo(line))


CONFIG_OPTION = config_option()


def _settings(config_path: Path | None) -> Settings:
    from broker.config import load_settings

    return load_settings(config_path)


@cli.command("serve")
@CONFIG_OPTION
@click.option("--workers", type=click.IntRange(1, 64), help="Gunicorn worker processes.")
@click.option("--bind", help="host:port to listen on (default: the config's listen).")
def serve_command(config_path: Path | None, workers: int | None, bind: str | None) -> None:
    """Run the broker under gunicorn."""
    from broker.serve import serve

    serve(_settings(config_path), workers, bind)


@cli.group("config")
def config_group() -> None:
    """The broker's own configuration."""


@config_group.command("check")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def config_check(path: Path) -> None:
    """Validate a config file; print file:line:column: reason per problem."""
    settings = _settings(path)
    click.echo(
        f"OK: {path} is valid ({len(settings.approvers)} approvers, {len(settings.groups)} "
        f"groups, {len(settings.identity.oidc)} OIDC issuers)."
    )
    if settings.approvals.oidc is None:
        click.echo(
            "WARNING: no approver sign-in is configured (approvals.oidc): a delete is approved "
            "by whoever holds an approver's personal link; possession of the link is the only "
            "proof of who approves. Configure OIDC sign-in so that a delete needs its approvers "
            "signed in (docs/approvals.md)."
        )


@cli.command("openapi")
@click.option("--markdown", is_flag=True, help="The reference in Markdown (docs/api.md).")
def openapi_command(markdown: bool) -> None:
    """Print the API's OpenAPI document (JSON), or its Markdown reference."""
    import json

    from broker.api.openapi import spec
    from broker.api.reference import render_markdown

    document = spec()
    click.echo(
        render_markdown(document) if markdown else json.dumps(document, indent=2), nl=not markdown
    )


@cli.group("store")
def store_group() -> None:
    """The broker's database."""


@store_group.command("upgrade")
@CONFIG_OPTION
def store_upgrade(config_path: Path | None) -> None:
    """Apply the schema migrations (also done on start; run it as a job before upgrades)."""
    from broker.store.sql import SqlStore

    settings = _settings(config_path)
    SqlStore.from_url(settings.database_url).close()
    click.echo("The store's schema is up to date.")


@cli.group("token")
def token_group() -> None:
    """Agent tokens signed by the broker (the embedded default's identity)."""


@token_group.command("mint")
@CONFIG_OPTION
@click.option(
    "--agent",
    required=True,
    help="Agent name, NAME or agent:NAME; the token's subject is agent:NAME.",
)
@click.option("--ttl", default="1h", show_default=True, help="Lifetime, e.g. 30m, 1h, 8h.")
def token_mint(config_path: Path | None, agent: str, ttl: str) -> None:
    """Print a JWT for an agent, signed with the broker's key."""
    from broker.errors import BadRequest
    from broker.identity.mint import mint_agent_token
    from broker.keys import load_keys
    from broker.yamldoc import parse_duration

    settings = _settings(config_path)
    seconds = parse_duration(ttl)
    if seconds is None:
        raise BadRequest(f"--ttl '{ttl}' is not a duration such as 30m or 1h")
    click.echo(
        mint_agent_token(load_keys(settings.state_dir), settings.identity.local, agent, seconds)
    )


@token_group.command("rotate-key")
@CONFIG_OPTION
def token_rotate_key(config_path: Path | None) -> None:
    """Sign agent tokens with a new key; tokens the old key signed stay valid until they
    expire (the old key is kept for verification for identity.local.max_ttl)."""
    import time

    from broker.keys import AGENT_KEY_FILE, RETIRED_KEYS_FILE, rotate_agent_key

    settings = _settings(config_path)
    new_kid, retired = rotate_agent_key(
        settings.state_dir, settings.identity.local.max_ttl_seconds, time.time()
    )
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(retired.verify_until))
    click.echo(f"New agent-signing key {new_kid}; `broker token mint` signs with it from now on.")
    click.echo(f"Tokens signed by {retired.key_id} are accepted until {until}.")
    click.echo(
        f"Brokers on this state directory pick the change up by themselves. Elsewhere, copy "
        f"{settings.state_dir / AGENT_KEY_FILE} and "
        f"{settings.state_dir / RETIRED_KEYS_FILE} to every replica (Kubernetes: the Secret "
        "broker-keys) and restart them (docs/operations.md, 'Rotating secrets')."
    )


def _add_feature_commands() -> None:
    """Commands that must load eagerly (prefer LAZY_COMMANDS above: add a line there)."""


def main(argv: Sequence[str] | None = None) -> None:
    _add_feature_commands()
    try:
        done = cli.main(
            args=list(argv) if argv is not None else None, prog_name="broker", standalone_mode=False
        )
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except InvalidFileError as e:
        for problem in e.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_PROBLEMS)
    except BrokerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(EXIT_PROBLEMS)
    if isinstance(done, Finished):
        if argv is None:  # the process's own command line: nothing else runs after it
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(done.exit_code)
        if done.exit_code:
            sys.exit(done.exit_code)


if __name__ == "__main__":
    main()
