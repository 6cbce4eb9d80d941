"""The broker as MCP tools for AI agent hosts (needs the ``[mcp]`` extra)."""
