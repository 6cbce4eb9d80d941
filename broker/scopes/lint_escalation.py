"""Rules that close the paths from an agent's session to more power or less oversight.

- ``escalation-action``: no tier grants an action that mints credentials of another
  identity, passes a role or changes permissions or trust (:mod:`broker.policy.escalation`)
  unless that tier's ``escalation_exceptions`` names it exactly, with a reason and a
  reviewer; an exception naming an action the tier does not grant, or one that opens no
  such path, is refused too (an exception must say what it excuses);
- ``delete-delay``: a ``delete`` tier waits at least the configured floor (default 60 s)
  between its last approval and collection, so a second look and the kill switch have time.
"""

from __future__ import annotations

from collections.abc import Iterator

from broker.errors import Problem
from broker.policy.escalation import escalation_reason
from broker.scopes.lint_base import LintContext, actions_of, problem_at
from broker.scopes.loader import LoadedScope
from broker.yamldoc import format_duration


def escalation_actions(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """Escalation actions only where the tier names each in a reviewed exception."""
    tiers = loaded.scope.tiers
    for tier, s, a, action, _ in actions_of(loaded):
        excused = {e.action.lower() for e in tiers[tier].escalation_exceptions}
        found = [
            (info.full_name, why)
            for info in ctx.iam.expand(action)
            if (why := escalation_reason(info)) and info.full_name.lower() not in excused
        ]
        if found:
            first, why = found[0]
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            yield problem_at(
                loaded,
                ("tiers", tier, "aws", s, "actions", a),
                "escalation-action",
                f"'{action}' in tier {tier} grants {first}, which {why}{more}; the kill switch "
                "cannot reach what it hands out. Refused unless the tier's "
                "escalation_exceptions names each such action with a reason and a reviewer",
            )
    for name, spec in tiers.items():
        granted = {
            info.full_name.lower(): info
            for statement in spec.aws
            for action in statement.actions
            for info in ctx.iam.expand(action)
        }
        for index, exception in enumerate(spec.escalation_exceptions):
            info = granted.get(exception.action.lower())
            key = ("tiers", name, "escalation_exceptions", index, "action")
            if info is None:
                yield problem_at(
                    loaded,
                    key,
                    "escalation-action",
                    f"the exception names {exception.action}, which tier {name} does not grant",
                )
            elif escalation_reason(info) is None:
                yield problem_at(
                    loaded,
                    key,
                    "escalation-action",
                    f"{info.full_name} opens no escalation path: remove the exception",
                )


def delete_delay(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """A delete waits at least the floor after its last approval."""
    tier = loaded.scope.tiers.get("delete")
    if tier is None or tier.approval is None:
        return
    floor = max(1, ctx.min_delete_delay_seconds)
    if tier.approval.delay_seconds < floor:
        yield problem_at(
            loaded,
            ("tiers", "delete", "approval", "delay"),
            "delete-delay",
            f"tier delete has a delay of {format_duration(tier.approval.delay_seconds)}; a "
            f"delete waits at least {format_duration(floor)} after its last approval (time "
            "for a second look, and for the kill switch)",
        )
