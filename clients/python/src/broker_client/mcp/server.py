"""The MCP server: the broker's tools for AI agent hosts, on protocol 2026-07-28 and the
handshake revisions before it.

A write/delete request that waits for people becomes, for a host that declared the tasks
extension, a task it polls and may cancel (:mod:`broker_client.mcp.tasks`). The approval
page reaches the human through URL-mode elicitation, never the model's context: in the
task's input requests, as a 2026-07-28 ``InputRequiredResult`` (hosts without tasks), or
as an ``elicitation/create`` request (handshake revisions). Every result is structured
content (:mod:`broker_client.mcp.outcomes`); argument errors too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from broker_client import __version__
from broker_client.mcp import tasks
from broker_client.mcp.arguments import (
    CredentialsArguments,
    ElevationArguments,
    NoArguments,
    StatusArguments,
    explain,
    input_schema,
)
from broker_client.mcp.outcomes import Outcome, call_result, refusal
from broker_client.mcp.tools import BrokerTools, Opened

NAME = "agent-credential-broker"
INSTRUCTIONS = """\
Short-lived cloud credentials from the agent credential broker.
- Call list_my_scopes to see which services, environments, regions and tiers you may ask for.
- request_credentials gives read access at once. Credentials are written to an AWS profile or
  an env file; the result says which and how to use it. Secrets are never shown to you.
- Writes and deletes need human approval: call request_elevation with a clear justification.
  The host shows the approval page to the user. If the result is a pending request, call
  request_status (wait_seconds up to 30) until it is issued, denied or expired.
- When you know exactly what you will change (a saved Terraform plan, a CloudFormation change
  set, a few operations), pass it as intent (or intent_file) instead of resources: approvers
  see exactly that, and the credential can do that and nothing else.
- Every refusal has a code: never retry a denied or out_of_scope request to get around it;
  frozen means an operator stopped all issuing for you: stop and tell the user.
"""
TOOLS: dict[str, tuple[type[BaseModel], str]] = {
    "list_my_scopes": (
        NoArguments,
        "List the scopes this agent may request: services, environments (regions, "
        "backends) and tiers (TTL, approvals needed, mandatory delay).",
    ),
    "request_credentials": (
        CredentialsArguments,
        "Get read-only credentials now. They are written to an AWS profile (aws) or an env "
        "file (vault, database); the result names it. Secrets are never returned.",
    ),
    "request_elevation": (
        ElevationArguments,
        "Ask humans for write or delete credentials. Hosts that support MCP tasks get a task "
        "that completes once people decide; others get a pending request_id to poll with "
        "request_status. The approval page goes to the user, not to you. With an intent "
        "(or intent_file) the credential does exactly what it says, and it decides the tier.",
    ),
    "request_status": (
        StatusArguments,
        "The state of an elevation request. Once approved (and any mandatory delay has "
        "passed) the credentials are collected and written; the result says where.",
    ),
}
#: Who is calling (the owner of tasks) and the tools acting as that agent.
ToolsFor = Callable[[], tuple[str, BrokerTools]]


class BrokerMcp:
    """The tools as an MCP ``Server``; ``tools_for`` gives the caller's tools (one agent
    on stdio, the bearer token's agent over HTTP)."""

    def __init__(self, tools_for: ToolsFor) -> None:
        self.tools_for = tools_for
        self.book = tasks.TaskBook()

    def build(self) -> Server[Any]:
        server: Server[Any] = Server(
            NAME,
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        server.add_request_handler("tasks/get", tasks.TaskParams, self.tasks_get)
        server.add_request_handler("tasks/update", tasks.TaskUpdateParams, self.tasks_update)
        server.add_request_handler("tasks/cancel", tasks.TaskParams, self.tasks_cancel)
        server.extensions[tasks.IDENTIFIER] = {}
        return server

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=name, description=text, input_schema=input_schema(model))
                for name, (model, text) in TOOLS.items()
            ]
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> Any:
        spec = TOOLS.get(params.name)
        if spec is None:
            return call_result(refusal("invalid_argument", f"no tool named {params.name!r}"))
        try:
            args = spec[0].model_validate(params.arguments or {})
        except ValidationError as e:
            field, sentence = explain(e)
            return call_result(refusal("invalid_argument", sentence, "error", field=field))
        owner, tools = self.tools_for()
        if isinstance(args, ElevationArguments):
            if params.request_state:  # the retry after the approval page was shown
                retry = StatusArguments(request_id=params.request_state)
                return call_result(await _blocking(tools.request_status, retry))
            opened = await _blocking(tools.request_elevation, args)
            if isinstance(opened, Opened):
                return await self._reach_the_human(ctx, owner, opened, args)
            return call_result(opened)
        if isinstance(args, CredentialsArguments):
            return call_result(await _blocking(tools.request_credentials, args))
        if isinstance(args, StatusArguments):
            return call_result(await _blocking(tools.request_status, args))
        return call_result(await _blocking(tools.list_my_scopes))

    async def _reach_the_human(
        self, ctx: ServerRequestContext[Any], owner: str, opened: Opened, args: ElevationArguments
    ) -> Any:
        pending = opened.pending
        message = (
            f"The agent asks for {args.tier} access to {args.service}/{args.environment}: "
            f"{args.justification} Request {pending.request_id} needs "
            f"{pending.approvals_required} approval(s); open the page to see it or approve."
        )
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        capabilities = ctx.session.client_capabilities
        if modern and tasks.declared(ctx.meta, capabilities):
            task = self.book.open(
                owner,
                pending.request_id,
                pending.approval_url,
                message,
                pending.expires_at.timestamp(),
            )
            task.status_message = opened.outcome["message"]
            return task.wire(detailed=False)
        elicitation = getattr(capabilities, "elicitation", None)
        if elicitation is None or getattr(elicitation, "url", None) is None:
            return call_result(opened.outcome)
        if modern:
            url_request = types.ElicitRequest(
                params=types.ElicitRequestURLParams(
                    message=message, url=pending.approval_url, elicitation_id=pending.request_id
                )
            )
            return types.InputRequiredResult(
                input_requests={tasks.APPROVAL_KEY: url_request}, request_state=pending.request_id
            )
        if ctx.session.can_send_request:
            try:
                await ctx.session.elicit_url(
                    message, pending.approval_url, pending.request_id, ctx.request_id
                )
            except (MCPError, anyio.ClosedResourceError, RuntimeError):
                pass  # the host could not show it; the request stands and can be polled
        return call_result(opened.outcome)

    # -- the tasks extension ----------------------------------------------------------

    async def tasks_get(self, ctx: ServerRequestContext[Any], params: tasks.TaskParams) -> Any:
        owner, tools = self.tools_for()
        task = _known(self.book.get(owner, params.task_id))
        if not task.terminal:
            await _blocking(self._advance, task, tools)
        return task.wire(detailed=True)

    async def tasks_update(
        self, ctx: ServerRequestContext[Any], params: tasks.TaskUpdateParams
    ) -> Any:
        owner, _ = self.tools_for()
        task = _known(self.book.get(owner, params.task_id))
        if tasks.APPROVAL_KEY in params.input_responses and task.status == "input_required":
            task.elicited = True
            task.settle("working", task.status_message)
        return {}

    async def tasks_cancel(self, ctx: ServerRequestContext[Any], params: tasks.TaskParams) -> Any:
        owner, tools = self.tools_for()
        task = _known(self.book.get(owner, params.task_id))
        if not task.terminal:
            await _blocking(tools.withdraw, task.request_id)
            task.settle("cancelled", "withdrawn: the host cancelled the task")
        return {}

    def _advance(self, task: tasks.ApprovalTask, tools: BrokerTools) -> None:
        """Look at the broker request once; settle the task when it is decided."""
        with task.lock:
            if task.terminal:
                return
            outcome: Outcome = tools.request_status(StatusArguments(request_id=task.request_id))
            status = outcome["status"]
            message = outcome.get("message") or str(status)
            if status in ("pending", "approved"):
                waiting = "working" if task.elicited else "input_required"
                task.settle(waiting, message)
            elif status == "unreachable":
                task.status_message = f"the broker cannot be reached now: {message}"
            else:
                dumped = call_result(outcome).model_dump(
                    by_alias=True, mode="json", exclude_none=True
                )
                task.settle("completed", message if status != "issued" else "issued", dumped)


def _known(task: tasks.ApprovalTask | None) -> tasks.ApprovalTask:
    if task is None:
        raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task not found")
    return task


async def _blocking(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking broker call off the event loop."""
    return await anyio.to_thread.run_sync(lambda: function(*args))
