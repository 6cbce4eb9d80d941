"""What `broker revoke` and `broker unfreeze` build: the kill switch, and only what it uses.

`broker serve` builds every service at once (:func:`broker.services.build_services`). The
command line's kill switch needs a fraction of them, and during an incident its start-up
is part of the time to revoke: importing every service, loading IAM's action data and
linting every scope took a third of a 1,000-credential revocation. So here the scope
files are only read (:func:`broker.scopes.loader.readable_scopes`: no lint, no compiled
policies, no IAM data), and the approval service, which imports most of the broker, is
built only when the revocation reaches an open request to cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Unpack

from broker.approvals.open_requests import open_requests
from broker.audit.anchor import Anchorer, anchor_now
from broker.audit.recorder import AuditRecorder
from broker.cache import CredentialCache
from broker.config import Settings
from broker.guard.guard import Guard
from broker.guard.revocation import KillSwitch, OpenRequests, RevocationReport, RevokeTarget
from broker.metrics import Metrics
from broker.scopes.loader import readable_scopes
from broker.store.base import RequestStore, Store
from broker.store.opened import open_store
from broker.store.records import Reach


@dataclass(frozen=True)
class CancelWhenOpen:
    """Cancels open requests with the approval service, built (by ``build``) only when the
    revocation reaches one: nearly always there is none, and building it costs more than
    the look."""

    store: RequestStore
    build: Callable[[], OpenRequests]

    def cancel_open(self, reason: str, actor: str, **reach: Unpack[Reach]) -> Sequence[object]:
        if not open_requests(self.store, reach, limit=1):
            return []
        return self.build().cancel_open(reason, actor, **reach)


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class Revoker:
    """The kill switch of the command line, then the audit chain anchored at once."""

    kill_switch: KillSwitch
    audit: AuditRecorder
    store: Store
    anchorer: Anchorer | None = None

    def revoke(self, target: RevokeTarget, actor: str, reason: str) -> RevocationReport:
        report = self.kill_switch.revoke(target, actor, reason)
        anchor_now(self.anchorer, self.audit, "kill switch")
        return report

    def close(self) -> None:
        self.store.close()


def build_revoker(settings: Settings, clock: Callable[[], float] = time.time) -> Revoker:
    """The kill switch on the backends ``settings`` configure (as `broker serve`'s)."""
    from broker.wiring import accounts_for, build_anchors, build_issuers, build_notifier

    store = open_store(settings)
    audit = AuditRecorder(store, clock)
    metrics = Metrics()
    notifier = build_notifier(settings)
    issuers = build_issuers(settings, metrics)
    accounts = accounts_for(settings, issuers)

    def approvals() -> OpenRequests:
        from broker.services import build_services

        services = build_services(
            settings, clock, store=store, issuers=issuers, notifier=notifier, accounts=accounts
        )
        return services.approvals

    kill_switch = KillSwitch.for_settings(
        settings,
        store=store,
        issuers=issuers,
        accounts=accounts,
        scopes=lambda: readable_scopes(settings.scopes_dir),
        approvals=CancelWhenOpen(store, approvals),
        cache=CredentialCache(
            settings.cache_margin_seconds, settings.cache_margin_ratio, clock=clock
        ),
        guard=Guard(store, audit, notifier, settings.breaker, clock),
        notifier=notifier,
        audit=audit,
        metrics=metrics,
        clock=clock,
    )
    anchors = build_anchors(settings)
    anchorer = Anchorer(store, anchors, clock) if anchors is not None else None
    return Revoker(kill_switch, audit, store, anchorer)
