"""Build every client and service from settings, in one place.

Tests pass their own pieces (a store on a test database, issuers against test servers, a
notifier speaking to a local Slack stand-in, a fake clock); everything else is built from
the settings. Nothing here runs at import.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint

from broker.approvals.change_set import ChangeSetCheck
from broker.approvals.impact import ImpactMeasurer
from broker.approvals.links import LinkSigner
from broker.approvals.notices import Notices
from broker.approvals.read_access import ReadAccess
from broker.approvals.service import ApprovalService
from broker.audit.anchor import Anchorer, AnchorStore, anchor_now
from broker.audit.recorder import AuditRecorder
from broker.cache import CredentialCache
from broker.config import Settings
from broker.credentials import CredentialService
from broker.errors import BrokerError, Problem
from broker.guard.guard import Guard
from broker.guard.revocation import KillSwitch, RevocationReport, RevokeTarget
from broker.identity.verifier import TokenVerifier
from broker.issuance import IssuanceService
from broker.issuers.aws_accounts import AwsAccounts
from broker.issuers.base import Issuer
from broker.keys import BrokerKeys, load_keys
from broker.metrics import Metrics
from broker.notify.base import LogNotifier, Notifier, failure_reason
from broker.policy.iam_actions import IamDatabase, iam_database
from broker.reconciler import Reconciler
from broker.scopes.holder import ReloadOutcome, ScopeHolder
from broker.scopes.lint_base import context_for
from broker.store.base import Store
from broker.store.opened import open_store

log = logging.getLogger(__name__)

READINESS_CACHE_SECONDS = 2.0


@dataclass
class Services:
    settings: Settings
    clock: Callable[[], float]
    keys: BrokerKeys
    iam: IamDatabase
    store: Store
    scopes: ScopeHolder
    verifier: TokenVerifier
    cache: CredentialCache
    issuers: Mapping[str, Issuer]
    audit: AuditRecorder
    metrics: Metrics
    notifier: Notifier
    guard: Guard
    links: LinkSigner
    issuance: IssuanceService
    approvals: ApprovalService
    credentials: CredentialService
    kill_switch: KillSwitch
    reconciler: Reconciler
    anchorer: Anchorer | None = None  # the audit chain's outside anchor, when configured
    blueprints: list[Blueprint] = field(default_factory=list)
    _readiness: tuple[float, dict[str, str]] = (float("-inf"), {})
    _readiness_lock: threading.Lock = field(default_factory=threading.Lock)

    def readiness(self) -> dict[str, str]:
        """Each dependency's state ("ok" or why not), cached briefly."""
        now = time.monotonic()
        with self._readiness_lock:
            at, checks = self._readiness
            if now - at < READINESS_CACHE_SECONDS:
                return checks
        checks = {}
        current = self.scopes.current
        # Scopes broken on disk are not served (listed by /readyz), the others are: ready.
        checks["scopes"] = "ok" if current.scopes else "no valid scopes loaded"
        try:
            self.store.ping()
            checks["store"] = "ok"
        except BrokerError as e:
            checks["store"] = e.message
        for name, issuer in sorted(self.issuers.items()):
            try:
                issuer.check()
                checks[name] = "ok"
            except BrokerError as e:
                checks[name] = e.message
        if self.anchorer is not None:
            checks["audit_anchor"] = self.anchorer.status
        with self._readiness_lock:
            self._readiness = (now, checks)
        return checks

    def on_scope_reload(self, outcome: ReloadOutcome) -> None:
        evicted = self.cache.evict_services(outcome.changed)
        invalid = self.scopes.current.invalid
        self.audit.record(
            "scope_reload",
            "applied" if outcome.applied else "partial",
            "broker",
            reason=outcome.describe()
            if outcome.applied
            else f"{len(outcome.problems)} problem(s); not served until fixed: "
            + (", ".join(sorted(invalid)) or "(no scope that was served)"),
            changed=sorted(outcome.changed),
            added=sorted(outcome.added) or None,
            removed=sorted(outcome.removed) or None,
            invalid=sorted(invalid) or None,
            evicted=evicted,
            problems=[str(p) for p in outcome.problems[:20]] or None,
        )
        for service in sorted(outcome.invalid):
            self._alert_invalid(service, invalid[service])

    def _alert_invalid(self, service: str, problems: tuple[Problem, ...]) -> None:
        """Tell the approvers a scope is out of service, once across replicas (every replica
        reloads the same files)."""
        mark = hashlib.sha256(
            "\n".join([service, self.scopes.current.fingerprint, *map(str, problems)]).encode()
        ).hexdigest()[:48]
        now = self.clock()
        if not self.store.use_token(f"scope-invalid:{mark}", "scope-alert", now + 86400, now):
            return
        try:
            self.notifier.alert(
                f"Scope {service} is invalid on disk and is not served until its file is "
                f"fixed: its requests are refused (409 scope_invalid). {problems[0]}",
                [str(p) for p in problems[:10]],
            )
        except Exception as e:  # noqa: BLE001 - an alert that fails must not undo the reload
            self.audit.record(
                "notify", "failed", "broker", reason=failure_reason(e), service=service
            )

    def revoke(self, target: RevokeTarget, actor: str, reason: str) -> RevocationReport:
        """The kill switch, then the audit chain anchored at once (its records included)."""
        report = self.kill_switch.revoke(target, actor, reason)
        self.anchor("kill switch")
        return report

    def anchor(self, reason: str) -> list[str]:
        """Anchor the audit chain now (when configured); never raises (:func:`anchor_now`)."""
        return anchor_now(self.anchorer, self.audit, reason)

    def start_background(self) -> None:
        """Watch the scope files, expire overdue requests, reconcile what was minted with
        what was recorded and anchor the audit chain (in `broker serve`)."""
        from broker.scopes.holder import ScopeWatcher

        ScopeWatcher(self.scopes).start()
        anchor = self.settings.audit_anchor
        if self.anchorer is not None and anchor is not None:
            every = anchor.interval_seconds

            def anchoring() -> None:
                # Every worker of every replica runs this; one per interval anchors (the
                # first to claim the interval in the shared store), at once after a start.
                while True:
                    now = self.clock()
                    try:
                        claim = f"audit-anchor:{int(now // every)}"
                        if self.store.use_token(claim, "audit-anchor", now + 2 * every, now):
                            self.anchor("periodic")
                    except Exception:  # noqa: BLE001 - the store down: try the next interval
                        log.exception("audit anchoring failed")
                    time.sleep(every - now % every + 0.5)

            threading.Thread(target=anchoring, name="audit-anchor", daemon=True).start()

        def sweep() -> None:
            while True:
                time.sleep(5)
                try:
                    self.approvals.sweep()
                except Exception:  # noqa: BLE001 - a sweep failing must not stop the next
                    log.exception("request sweep failed")

        threading.Thread(target=sweep, name="request-sweeper", daemon=True).start()

        def reconcile() -> None:
            while True:
                try:
                    self.reconciler.run()
                except Exception:  # noqa: BLE001 - a pass failing must not stop the next
                    log.exception("reconciler pass failed")
                time.sleep(self.settings.reconcile_interval_seconds)

        threading.Thread(target=reconcile, name="reconciler", daemon=True).start()

    def close(self) -> None:
        self.store.close()


def build_services(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    store: Store | None = None,
    issuers: Mapping[str, Issuer] | None = None,
    notifier: Notifier | None = None,
    keys: BrokerKeys | None = None,
    build_issuers: Callable[[Settings, Metrics], Mapping[str, Issuer]] | None = None,
    build_notifier: Callable[[Settings], Notifier] | None = None,
    accounts: AwsAccounts | None = None,
    build_accounts: Callable[[Settings, Mapping[str, Issuer]], AwsAccounts | None] | None = None,
    run_impact: Callable[[Callable[[], None]], None] | None = None,
    anchors: AnchorStore | None = None,
    build_anchors: Callable[[Settings], AnchorStore | None] | None = None,
    **_: Any,
) -> Services:
    """Everything the broker needs, wired once."""
    iam = iam_database()
    # Keys from the state directory are read again when a rotation there is noticed.
    reload_keys = None if keys is not None else (lambda: load_keys(settings.state_dir))
    keys = keys or load_keys(settings.state_dir)
    # A store given (tests, `broker revoke` cancelling requests) streams as its opener set.
    store = store or open_store(settings)
    metrics = Metrics()
    scopes = ScopeHolder(settings.scopes_dir, context_for(iam, settings))
    audit = AuditRecorder(store, clock)
    if notifier is None:
        notifier = build_notifier(settings) if build_notifier else LogNotifier(settings.alert_log)
    if issuers is None:
        issuers = build_issuers(settings, metrics) if build_issuers else {}
    cache = CredentialCache(settings.cache_margin_seconds, settings.cache_margin_ratio, clock=clock)
    guard = Guard(store, audit, notifier, settings.breaker, clock)
    links = LinkSigner(keys.link_secret, settings.public_url, settings.approvals.link_ttl_seconds)
    issuance = IssuanceService(
        store=store,
        cache=cache,
        issuers=issuers,
        audit=audit,
        revocations=guard,
        metrics=metrics,
        clock=clock,
        longest_call_seconds=settings.upstream_deadline_seconds,
    )
    approvals = ApprovalService(
        settings=settings,
        scopes=scopes,
        iam=iam,
        store=store,
        audit=audit,
        notices=Notices(settings, scopes, iam, store, audit, notifier),
        issuance=issuance,
        metrics=metrics,
        frozen=guard.frozen,
        clock=clock,
    )
    reads = ReadAccess(settings, issuance, iam, guard.frozen, clock)
    approvals.intent_check = ChangeSetCheck(reads, iam)
    approvals.impact = ImpactMeasurer(
        settings=settings,
        store=store,
        reads=reads,
        audit=audit,
        updated=lambda record: approvals.notices.updated(
            record, approvals.view(record).approvals_received
        ),
        clock=clock,
        **({"run": run_impact} if run_impact is not None else {}),
    )
    credentials = CredentialService(
        scopes=scopes,
        iam=iam,
        guard=guard,
        issuance=issuance,
        escalations=approvals,
        audit=audit,
        metrics=metrics,
        clock=clock,
    )
    if accounts is None and build_accounts is not None:
        accounts = build_accounts(settings, issuers)
    kill_switch = KillSwitch.for_settings(
        settings,
        store=store,
        issuers=issuers,
        accounts=accounts,
        scopes=lambda: scopes.current.scopes.values(),
        approvals=approvals,
        cache=cache,
        guard=guard,
        notifier=notifier,
        audit=audit,
        metrics=metrics,
        clock=clock,
    )
    reconciler = Reconciler(
        store=store,
        issuers=issuers,
        accounts=accounts,
        scopes=scopes,
        audit=audit,
        in_flight_seconds=settings.upstream_deadline_seconds + 5.0,
        clock=clock,
    )
    services = Services(
        settings=settings,
        clock=clock,
        keys=keys,
        iam=iam,
        store=store,
        scopes=scopes,
        verifier=TokenVerifier(settings.identity, keys, clock=clock, reload_keys=reload_keys),
        cache=cache,
        issuers=issuers,
        audit=audit,
        metrics=metrics,
        notifier=notifier,
        guard=guard,
        links=links,
        issuance=issuance,
        approvals=approvals,
        credentials=credentials,
        kill_switch=kill_switch,
        reconciler=reconciler,
    )
    if anchors is None and build_anchors is not None:
        anchors = build_anchors(settings)
    if anchors is not None:
        services.anchorer = Anchorer(store, anchors, clock)
    scopes.on_reload(services.on_scope_reload)
    return services
