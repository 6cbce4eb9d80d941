"""The host side of the MCP tasks extension, as a host would implement it on the `mcp`
package's own client: a claim for ``resultType: "task"`` that polls ``tasks/get``, shows
URL-mode elicitations to "the human" (a callback) and answers them with ``tasks/update``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from pydantic import ConfigDict, Field

IDENTIFIER = "io.modelcontextprotocol/tasks"


class TaskId(types.RequestParams):
    task_id: str = Field(alias="taskId")


class TaskUpdate(TaskId):
    input_responses: dict[str, Any] = Field(alias="inputResponses")


class GetTask(types.Request[TaskId, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskId
    name_param = "taskId"


class UpdateTask(types.Request[TaskUpdate, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: TaskUpdate
    name_param = "taskId"


class CancelTask(types.Request[TaskId, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskId
    name_param = "taskId"


class CreatedTask(types.Result):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    result_type: Literal["task"] = Field("task", alias="resultType")
    task_id: str = Field(alias="taskId")
    status: str


class AnyResult(types.Result):
    model_config = ConfigDict(extra="allow")


Human = Callable[[dict[str, Any]], Awaitable[str]]  # sees an elicitation, says accept/decline


class TasksHost(ClientExtension):
    identifier = IDENTIFIER

    def __init__(self, human: Human, poll_seconds: float = 0.05, cancel_after: int | None = None):
        self.human = human
        self.poll_seconds = poll_seconds
        self.cancel_after = cancel_after  # cancel the task after this many polls
        self.created: list[dict[str, Any]] = []
        self.polled: list[dict[str, Any]] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self.resolve)]

    async def resolve(self, created: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
        self.created.append(created.model_dump(by_alias=True))
        answered: set[str] = set()
        task = TaskId(taskId=created.task_id)
        while True:
            got = await ctx.session.send_request(GetTask(params=task), AnyResult)
            body = got.model_dump(by_alias=True)
            self.polled.append(body)
            if self.cancel_after is not None and len(self.polled) >= self.cancel_after:
                await ctx.session.send_request(CancelTask(params=task), AnyResult)
                self.cancel_after = None
            if body["status"] == "completed":
                return types.CallToolResult.model_validate(body["result"])
            if body["status"] in ("cancelled", "failed"):
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=body["status"])], is_error=True
                )
            for key, request in (body.get("inputRequests") or {}).items():
                if key not in answered:
                    answered.add(key)
                    action = await self.human(request["params"])
                    update = TaskUpdate(
                        taskId=created.task_id, inputResponses={key: {"action": action}}
                    )
                    await ctx.session.send_request(UpdateTask(params=update), AnyResult)
            await anyio.sleep(self.poll_seconds)
