"""The approval rule in force for a request: its scope's rule now, its sets of people
resolved against the broker config. (The decisions on it are :mod:`broker.policy.decision`.)"""

from __future__ import annotations

from broker.config import Settings
from broker.policy import quorum
from broker.policy.decision import RuleInForce
from broker.scopes.registry import ScopeSet
from broker.store.records import RequestRecord


def rule_in_force(
    scopes: ScopeSet, settings: Settings, record: RequestRecord
) -> RuleInForce | None:
    """The scope and approval rule in force for ``record`` in ``scopes``, and who may
    decide it (None when its scope or tier is gone)."""
    scope = scopes.get(record.service)
    tier = scope.tiers.get(record.tier) if scope else None  # type: ignore[call-overload]
    if scope is None or tier is None or tier.approval is None:
        return None
    rule = tier.approval
    sets = quorum.resolve(rule, settings.approvers_for)
    eligible = frozenset().union(*(s.members for s in sets))
    return RuleInForce(scope, rule, eligible, sets)
