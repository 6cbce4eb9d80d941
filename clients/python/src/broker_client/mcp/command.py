"""``broker-mcp``: serve the credential tools to an AI agent host over MCP (stdio)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from broker_client.options import Parser, add_connection_options, make_client, run_main


def parser(prog: str = "broker-mcp") -> Parser:
    p = Parser(
        prog=prog,
        description="Serve the credential tools to an AI agent over MCP (stdio). Tools: "
        "request_credentials, request_elevation, request_status, list_my_scopes. "
        "Credentials are written to an AWS profile or a 0600 env file, never returned.",
    )
    add_connection_options(p)
    p.add_argument(
        "--aws-credentials-file",
        type=Path,
        default=os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or None,
        help="The AWS credentials file the tools write profiles to [env "
        "AWS_SHARED_CREDENTIALS_FILE; default ~/.aws/credentials].",
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        default=os.environ.get("BROKER_OUTPUT_DIR") or None,
        help="Where Vault/database env files go [env BROKER_OUTPUT_DIR; default "
        "$XDG_RUNTIME_DIR/agent-credential-broker/credentials].",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "broker-mcp") -> int:
    args = parser(prog).parse_args(argv)
    return run_main(lambda: _serve(args))


def _serve(args: argparse.Namespace) -> int:
    client, _ = make_client(args)
    from broker_client.mcp.server import build_server
    from broker_client.mcp.tools import BrokerTools
    from broker_client.mcp.writer import (
        CredentialWriter,
        default_aws_credentials_file,
        default_output_dir,
    )

    writer = CredentialWriter(
        args.aws_credentials_file or default_aws_credentials_file(),
        args.output_dir or default_output_dir(),
    )
    build_server(BrokerTools(client, writer)).run("stdio")
    return 0


def entry_point() -> None:
    """The ``broker-mcp`` console script."""
    sys.exit(main())
