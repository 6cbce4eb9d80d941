"""``broker-mcp``: serve the credential tools to AI agent hosts over MCP (stdio or HTTP)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from broker_client.options import (
    Parser,
    add_connection_options,
    broker_url,
    make_client,
    run_main,
)


def parser(prog: str = "broker-mcp") -> Parser:
    p = Parser(
        prog=prog,
        description="Serve the credential tools to an AI agent host over MCP. Tools: "
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
    http = p.add_argument_group("streamable HTTP (--transport http)")
    http.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    http.add_argument("--host", default="127.0.0.1", help="Address to listen on (HTTP).")
    http.add_argument("--port", type=int, default=8765, help="Port to listen on (HTTP).")
    http.add_argument(
        "--public-url",
        help="The URL hosts reach this server at, for the protected-resource metadata "
        "(default http://HOST:PORT).",
    )
    http.add_argument(
        "--authorization-server",
        help="Where agent tokens come from, published in the protected-resource metadata "
        "(default: the broker's URL).",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "broker-mcp") -> int:
    args = parser(prog).parse_args(argv)
    return run_main(lambda: _serve(args))


def _serve(args: argparse.Namespace) -> int:
    from broker_client.client import BrokerClient
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

    def make_tools(client: BrokerClient) -> BrokerTools:
        return BrokerTools(client, writer)

    if args.transport == "http":
        return _serve_http(args, make_tools)
    from mcp.server.stdio import stdio_server

    from broker_client.mcp.server import BrokerMcp

    client, _ = make_client(args)
    tools = make_tools(client)
    server = BrokerMcp(lambda: ("stdio", tools)).build()

    async def run() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    import anyio

    anyio.run(run)
    return 0


def _serve_http(args: argparse.Namespace, make_tools: object) -> int:
    import uvicorn

    from broker_client.mcp.http import http_app

    # Over HTTP each host brings its own agent token: BROKER_TOKEN is not used.
    url = broker_url(args)
    public = args.public_url or f"http://{args.host}:{args.port}"
    app = http_app(
        make_tools,  # type: ignore[arg-type]
        url,
        public,
        args.authorization_server or url,
        args.timeout,
        args.host,
    )
    uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")).run()
    return 0


def entry_point() -> None:
    """The ``broker-mcp`` console script."""
    sys.exit(main())
