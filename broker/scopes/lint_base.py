"""What every lint rule shares: the context it runs in and how a problem is positioned."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from broker.config import Settings
from broker.errors import Problem
from broker.policy.iam_actions import IamDatabase
from broker.scopes.loader import LoadedScope
from broker.scopes.model import TierName

DEFAULT_MIN_DELETE_DELAY_SECONDS = 60


class ApproverDirectory(Protocol):
    """What the lint needs to know of the broker config's approvers and groups."""

    def has_approver(self, name: str) -> bool: ...

    def has_group(self, name: str) -> bool: ...

    def has_issuer(self, name: str) -> bool: ...

    def approvers_for(self, names: tuple[str, ...], groups: tuple[str, ...]) -> set[str]: ...


@dataclass(frozen=True)
class LintContext:
    """What rules consult besides the scope: IAM's action data, and (when the broker's
    config is at hand) its approvers, groups and issuers and the floor of a delete's delay."""

    iam: IamDatabase
    directory: ApproverDirectory | None = None
    min_delete_delay_seconds: int = DEFAULT_MIN_DELETE_DELAY_SECONDS


def context_for(iam: IamDatabase, settings: Settings | None) -> LintContext:
    """The lint's context with the broker config's approvers and floors (None: without)."""
    if settings is None:
        return LintContext(iam=iam)
    return LintContext(
        iam=iam,
        directory=settings,
        min_delete_delay_seconds=settings.approvals.min_delete_delay_seconds,
    )


Rule = Callable[[LoadedScope, LintContext], Iterator[Problem]]


def problem_at(loaded: LoadedScope, key: tuple[object, ...], rule: str, reason: str) -> Problem:
    position = loaded.position(*key)
    return Problem(position.path, position.line, position.column, f"{reason} [{rule}]")


def actions_of(loaded: LoadedScope) -> Iterator[tuple[TierName, int, int, str, tuple[str, ...]]]:
    """(tier, statement index, action index, action, statement resources) for every action."""
    for tier_name, tier in loaded.scope.tiers.items():
        for s_index, statement in enumerate(tier.aws):
            for a_index, action in enumerate(statement.actions):
                yield tier_name, s_index, a_index, action, statement.resources
