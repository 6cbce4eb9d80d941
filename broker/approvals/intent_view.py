"""What approvers read of a request's intent, most dangerous first. Pure.

The approval page and Slack show the same thing, in this order (docs/intents.md, "For
approvers"): replacements ("REPLACES aws_dynamodb_table.ledger: its data will be lost"),
then deletions and every destructive operation with why it counts as one, then the
measured impact, then every other change and operation exactly as granted; and the
intent's SHA-256, which is what an approval binds. The intent is read back from the
stored canonical form, its hash checked: a stored intent that no longer matches its hash
is shown as such, never as what it claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.errors import BrokerError
from broker.intent.canonical import from_canonical
from broker.intent.classify import IntentSummary, describe, replacements, summarize
from broker.intent.model import Intent
from broker.scopes.model import VaultKv
from broker.store.records import RequestRecord

MEASURING = "measuring"
DONE = "done"
_KINDS = {
    "terraform_plan": "a Terraform plan",
    "cloudformation_change_set": "a CloudFormation change set",
    "operations": "operations written by hand",
}


@dataclass(frozen=True)
class IntentView:
    """An intent in an approver's words, in the order they should read it."""

    sha256: str
    source: str  # "a Terraform plan (Terraform 1.9.5)"...
    replacements: tuple[str, ...]
    destroys: tuple[str, ...]
    impact: tuple[str, ...]
    others: tuple[str, ...]
    summary: IntentSummary | None
    broken: str = ""  # why the stored intent cannot be shown (then nothing else is)

    @property
    def short_hash(self) -> str:
        return self.sha256[:16]


def intent_view(
    record: RequestRecord,
    kv: VaultKv | None,
    now: float,
    impact_deadline: float,
) -> IntentView | None:
    """The view of ``record``'s intent (None when it has none).

    ``impact_deadline``: seconds after opening by which a measurement must have reported;
    past it, a measurement still "in progress" (its replica stopped) is called unknown.
    """
    if record.intent is None:
        return None
    try:
        intent = from_canonical(record.intent, record.intent_sha256 or "")
    except BrokerError as e:
        return IntentView(
            record.intent_sha256 or "",
            "",
            (),
            (),
            (),
            (),
            None,
            broken=f"{e.message}: do not approve this request",
        )
    replaced = tuple(r.text for r in replacements(intent))
    lines = [line for line in describe(intent, kv) if line not in replaced]
    destroys = tuple(line for line in lines if line.startswith(("DELETES ", "destroys: ")))
    others = tuple(line for line in lines if line not in destroys)
    return IntentView(
        sha256=intent.sha256,
        source=source_of(intent),
        replacements=replaced,
        destroys=destroys,
        impact=impact_lines(record.impact, record.created_at, now, impact_deadline),
        others=others,
        summary=summarize(intent, kv),
    )


def source_of(intent: Intent) -> str:
    kind = _KINDS[intent.kind]
    version = intent.source_value("terraform_version")
    change_set = intent.source_value("change_set_id") or intent.source_value("change_set_name")
    if version:
        return f"{kind} (Terraform {version})"
    if change_set:
        return f"{kind} ({change_set})"
    return kind


def impact_lines(
    impact: Mapping[str, Any], opened_at: float, now: float, deadline: float
) -> tuple[str, ...]:
    """The measured impact's lines; nothing when there is nothing destructive to measure."""
    status = impact.get("status")
    if status == DONE:
        return tuple(str(line) for line in impact.get("lines", ()))
    if status == MEASURING:
        if now > opened_at + deadline:
            return ("impact unknown: the measurement did not report (its broker replica stopped)",)
        return ("impact being measured with the read tier: reload the page in a few seconds",)
    return ()
