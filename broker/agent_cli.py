"""``broker creds`` and ``broker mcp``: the client package's commands under ``broker``.

They live in the agent-credential-broker-client distribution (``broker-creds``,
``broker-mcp``), which agents install alone; these wrappers pass every argument through, so
``broker creds --help`` shows the same help.
"""

from __future__ import annotations

import sys

import click

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.command("creds", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def creds_command(arguments: tuple[str, ...]) -> None:
    """Print short-lived credentials for a scope tier (broker-creds)."""
    from broker_client.cli import main

    sys.exit(main(list(arguments), prog="broker creds"))


@click.command("mcp", context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def mcp_command(arguments: tuple[str, ...]) -> None:
    """Serve the credential tools to an AI agent over MCP (broker-mcp)."""
    from broker_client.mcp.command import main

    sys.exit(main(list(arguments), prog="broker mcp"))
