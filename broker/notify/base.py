"""The notifier seam: tell approvers about requests, update them, raise alerts.

Notifications are best effort: a notifier that cannot reach its channel raises
:class:`NotificationFailed`, which callers record and survive (an approval link still
works; the kill switch still revokes).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from broker.approvals.intent_view import IntentView

log = logging.getLogger(__name__)


class NotificationFailed(Exception):
    """A notification could not be delivered (the reason is safe to log)."""


def failure_reason(error: Exception) -> str:
    """What may be recorded of a notifier's failure: its own safe reason, or only the
    exception's type (a third-party message could quote a URL or a token)."""
    return str(error) if isinstance(error, NotificationFailed) else type(error).__name__


@dataclass(frozen=True)
class ApprovalNotice:
    """What approvers are told about a request. All strings are raw user input: escape them."""

    request_id: str
    agent: str
    agent_claims: Mapping[str, str]
    service: str
    environment: str
    region: str | None
    tier: str
    backend: str
    justification: str
    resources: Sequence[str]
    adds: Sequence[str]
    duration_seconds: int
    approvals_required: int
    approvals_received: int
    delay_seconds: int
    page_url: str
    channel: str | None = None
    slack_approval: bool = True
    direct_slack_users: Sequence[str] = field(default_factory=tuple)
    intent: IntentView | None = None  # what the agent will do, when it said (replacements first)
    grant_sha256: str | None = None  # the grant approvers approve (the page shows it whole)


class Notifier(Protocol):
    def request_opened(self, notice: ApprovalNotice) -> Mapping[str, Any]:
        """Post the request; return what is needed to update the message later."""
        ...

    def request_updated(
        self, notice: ApprovalNotice, status: str, detail: str, handle: Mapping[str, Any]
    ) -> None: ...

    def alert(self, text: str, evidence: Sequence[str] = ()) -> None: ...


class LogNotifier:
    """The notifier when no Slack is configured: approvers use the page; alerts go to logs,
    and to ``alert_log`` when given. The server logs to its own stream, but ``broker
    revoke`` runs elsewhere: a file every process appends to puts the kill switch's alert
    where the server's are (``broker dev`` shows that file in its terminal)."""

    def __init__(self, alert_log: Path | None = None) -> None:
        self.alert_log = alert_log

    def request_opened(self, notice: ApprovalNotice) -> Mapping[str, Any]:
        log.info(
            "approval requested",
            extra={"request_id": notice.request_id, "service": notice.service, "tier": notice.tier},
        )
        return {}

    def request_updated(
        self, notice: ApprovalNotice, status: str, detail: str, handle: Mapping[str, Any]
    ) -> None:
        log.info("request %s", status, extra={"request_id": notice.request_id})

    def alert(self, text: str, evidence: Sequence[str] = ()) -> None:
        log.warning("ALERT: %s", text, extra={"evidence": list(evidence)})
        if self.alert_log is not None:
            append_alert(self.alert_log, text, evidence)


def append_alert(path: Path, text: str, evidence: Sequence[str]) -> None:
    """One JSON line per alert, in one append (whole lines, whichever process writes), the
    file private to the broker's user. A file that cannot be written fails the notification
    like an unreachable Slack would: recorded, and survived."""
    line = json.dumps(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "alert": text,
            "evidence": list(evidence),
        }
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise NotificationFailed(f"alert log {path}: {e.strerror}") from None
