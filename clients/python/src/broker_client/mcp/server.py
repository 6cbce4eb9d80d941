"""The MCP server: the tools of :mod:`broker_client.mcp.tools` over stdio."""

from __future__ import annotations

from mcp.server import MCPServer

from broker_client import __version__
from broker_client.mcp.tools import BrokerTools

NAME = "agent-credential-broker"
INSTRUCTIONS = """\
Short-lived cloud credentials from the agent credential broker.
- Call list_my_scopes to see which services, environments, regions and tiers you may ask for.
- request_credentials gives read access at once. Credentials are written to an AWS profile or
  an env file; the result says which and how to use it. Secrets are never shown to you.
- Writes and deletes need human approval: call request_elevation with a clear justification,
  then call request_status (wait_seconds up to 30) until the status is issued, denied or
  expired. Never retry a denied request to get around it.
- status "frozen" means an operator stopped all issuing for you: stop and tell the user.
"""


def build_server(tools: BrokerTools) -> MCPServer:
    """The MCP server exposing ``tools``' four tools."""
    server: MCPServer = MCPServer(
        NAME, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    for tool in (
        tools.request_credentials,
        tools.request_elevation,
        tools.request_status,
        tools.list_my_scopes,
    ):
        server.add_tool(tool, structured_output=True)
    return server
