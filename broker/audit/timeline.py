"""`broker audit show --request ID`: one request's whole story, as a readable timeline.

Pure: audit records in, lines of text out. Each line is when, what, who, and the facts
an investigator asks for first (approvals counted, who denied and why, the credential's
correlation ids, when it expires).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from broker.audit import actions as a
from broker.audit.recorder import iso_time
from broker.store.records import AuditRecord

CORRELATION_KEYS = (
    "access_key_id",
    "source_identity",
    "role_arn",
    "accessor",
    "lease_id",
    "username",
)
# Details already shown by a specific summary, or bookkeeping not worth a column.
QUIET_KEYS = frozenset({"http_request_id", "unclipped"})


def _when(value: Any) -> str:
    return iso_time(float(value)) if isinstance(value, int | float) else str(value)


def _ids(details: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={details[k]}" for k in CORRELATION_KEYS if details.get(k))


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _rest(details: Mapping[str, Any], shown: Iterable[str]) -> str:
    skip = set(shown) | QUIET_KEYS | set(CORRELATION_KEYS)
    return ", ".join(f"{k}={_text(details[k])}" for k in sorted(details) if k not in skip)


def summary(record: AuditRecord) -> str:
    """The facts of one record in a few words."""
    d = record.details
    action, outcome = record.action, record.outcome
    parts: list[str] = []
    if action == a.REQUEST and outcome == "pending":
        where = f"{record.tier} on {record.service}/{record.environment} ({d.get('backend')}"
        where += f", {d['region']})" if d.get("region") else ")"
        parts.append(where)
        if d.get("resources"):
            parts.append("resources " + ", ".join(map(str, d["resources"])))
        parts.append(
            f"{d.get('approvals_required', '?')} approval(s) required, {d.get('delay', 0)}s delay"
        )
        if d.get("justification"):
            parts.append(f"justification: \u201c{d['justification']}\u201d")
        shown = ["backend", "region", "resources", "approvals_required", "delay", "justification"]
    elif action in (a.APPROVE, a.DENY) and outcome == "recorded":
        parts.append(f"via {d.get('via', '?')}")
        if action == a.APPROVE:
            parts.append(f"{d.get('approvals', '?')} of {d.get('required', '?')}")
        shown = ["via", "approvals", "required"]
    elif action == a.REQUEST and outcome == "approved":
        if d.get("collectable_at") is not None:
            parts.append(f"collectable from {_when(d['collectable_at'])}")
        if d.get("collect_deadline") is not None:
            parts.append(f"until {_when(d['collect_deadline'])}")
        shown = ["collectable_at", "collect_deadline", "approvals"]
    elif action in (a.ISSUE, a.REVOKE):
        if d.get("backend"):
            parts.append(f"{d['backend']}")
        ids = _ids(d)
        if ids:
            parts.append(ids)
        if d.get("expires_at") is not None:
            parts.append(f"expires {_when(d['expires_at'])}")
        shown = ["backend", "expires_at"]
    elif action == a.NOTIFY and d.get("channel"):
        parts.append(f"to {d['channel']}")
        shown = ["channel"]
    else:
        shown = []
    rest = _rest(d, shown)
    if rest:
        parts.append(rest)
    if record.reason:
        parts.append(f"reason: {record.reason}")
    return "; ".join(parts)


def render_timeline(request_id: str, records: Iterable[AuditRecord]) -> Iterator[str]:
    """The header and one line per record, oldest first; nothing when there are none.

    A generator: a read request served from the cache thousands of times prints as it goes.
    """
    first = True
    for record in records:
        if first:
            first = False
            what = " ".join(
                part
                for part in (
                    record.tier or "",
                    f"{record.service}/{record.environment}" if record.service else "",
                )
                if part
            )
            yield f"Request {request_id}" + (f": {what}" if what else "")
        verb = a.verb(record.action, record.outcome)
        line = f"  {iso_time(record.at)}  #{record.seq:<6} {verb:<17} {record.actor}"
        text = summary(record)
        yield f"{line}  {text}" if text else line
