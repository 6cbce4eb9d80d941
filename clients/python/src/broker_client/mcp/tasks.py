"""MCP tasks (the ``io.modelcontextprotocol/tasks`` extension of protocol 2026-07-28):
a write/delete request that waits for people is a task the host polls and may cancel.

A task follows one broker request. It starts ``input_required`` with one URL-mode
elicitation, the approval page, for the human (never for the model); once the host has
answered it, the task is ``working`` while approvers decide and any mandatory delay runs,
and ``completed`` with the tool's final result (credentials written, or the refusal).
``tasks/cancel`` withdraws the broker request. The broker request is the durable state;
the task book is in memory and answers only the caller that created each task.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from pydantic import Field

IDENTIFIER = "io.modelcontextprotocol/tasks"
APPROVAL_KEY = "approval_page"
POLL_INTERVAL_MS = 2000
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class TaskParams(types.RequestParams):
    task_id: str = Field(alias="taskId")


class TaskUpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


@dataclass
class ApprovalTask:
    task_id: str
    owner: str
    request_id: str
    approval_url: str
    message: str
    created_at: float
    expires_at: float
    updated_at: float
    status: str = "input_required"
    status_message: str | None = None
    elicited: bool = False  # the host answered the approval-page elicitation
    result: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def settle(
        self, status: str, message: str | None, result: dict[str, Any] | None = None
    ) -> None:
        if self.terminal:
            return
        if (status, message) != (self.status, self.status_message) or result is not None:
            self.updated_at = time.time()
        self.status, self.status_message, self.result = status, message, result

    def wire(self, detailed: bool) -> dict[str, Any]:
        """The task as ``CreateTaskResult`` (``detailed=False``) or ``tasks/get`` shows it."""
        ttl_ms = max(0, int((self.expires_at - self.created_at) * 1000))
        body: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created_at),
            "lastUpdatedAt": _iso(self.updated_at),
            "ttlMs": ttl_ms,
            "pollIntervalMs": POLL_INTERVAL_MS,
        }
        if self.status_message:
            body["statusMessage"] = self.status_message
        if not detailed:
            return {"resultType": "task", **body}
        if self.status == "input_required":
            body["inputRequests"] = {
                APPROVAL_KEY: {
                    "method": "elicitation/create",
                    "params": {
                        "mode": "url",
                        "message": self.message,
                        "url": self.approval_url,
                        "elicitationId": self.request_id,
                    },
                }
            }
        if self.status == "completed" and self.result is not None:
            body["result"] = self.result
        return {"resultType": "complete", **body}


class TaskBook:
    """The tasks of this server, each visible only to its owner."""

    def __init__(self) -> None:
        self._tasks: dict[str, ApprovalTask] = {}
        self._lock = threading.Lock()

    def open(
        self, owner: str, request_id: str, approval_url: str, message: str, expires_at: float
    ) -> ApprovalTask:
        now = time.time()
        task = ApprovalTask(
            task_id=secrets.token_urlsafe(24),
            owner=owner,
            request_id=request_id,
            approval_url=approval_url,
            message=message,
            created_at=now,
            expires_at=max(expires_at, now) + 3600,  # kept an hour past the request
            updated_at=now,
        )
        with self._lock:
            self._prune(now)
            self._tasks[task.task_id] = task
        return task

    def get(self, owner: str, task_id: str) -> ApprovalTask | None:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None or not secrets.compare_digest(task.owner, owner):
            return None
        return task

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._tasks.items() if t.expires_at < now]:
            del self._tasks[key]


def declared(meta: types.RequestParamsMeta | None, capabilities: Any) -> bool:
    """Whether this request's client declared the tasks extension."""
    extensions = getattr(capabilities, "extensions", None) or {}
    return IDENTIFIER in extensions


def _iso(timestamp: float) -> str:
    return (
        dt.datetime.fromtimestamp(timestamp, dt.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )
