"""Impact before approval: what an intent would destroy, measured in the background.

When a request whose intent destroys something is opened, its record says "measuring" and
the agent's POST returns at once: measuring mints a read credential (an STS call) and then
lists and describes (up to ``limits.impact_deadline``, 3 s by default), which would more
than double the agent's wait, while approvers open the page seconds to minutes later. A
background thread measures with the **read tier** of the request's own scope (a credential
minted, recorded and revocable like any other, never handed out), stores the lines on the
request, audits them and updates the approvers' message. A measurement that cannot be made
says "impact unknown" and why; it never blocks, delays or changes what is granted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.approvals.intent_view import DONE
from broker.approvals.read_access import ReadAccess
from broker.audit.recorder import AuditRecorder
from broker.config import Settings
from broker.errors import BrokerError
from broker.identity.model import AgentIdentity
from broker.intake import ResolvedRequest
from broker.intent.impact import ImpactProbe, impact_targets, measure_impact
from broker.intent.impact_aws import AwsImpactProbe
from broker.intent.impact_postgres import PostgresImpactProbe
from broker.store.base import RequestStore
from broker.store.records import RequestRecord

log = logging.getLogger(__name__)


def in_background(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="impact", daemon=True).start()


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class ImpactMeasurer:
    settings: Settings
    store: RequestStore
    reads: ReadAccess
    audit: AuditRecorder
    updated: Callable[[RequestRecord], None]  # tell the approvers (their message)
    clock: Callable[[], float] = time.time
    run: Callable[[Callable[[], None]], None] = in_background

    def start(
        self, identity: AgentIdentity, resolved: ResolvedRequest, record: RequestRecord
    ) -> None:
        """Measure ``record``'s impact in the background, if it has one to measure."""
        if resolved.intent is None or not record.impact:
            return
        self.run(lambda: self._measure(identity, resolved, record))

    def measure(self, identity: AgentIdentity, resolved: ResolvedRequest) -> tuple[str, ...]:
        """The approver's impact lines (raises BrokerError when no probe can be made)."""
        assert resolved.intent is not None
        targets = impact_targets(resolved.intent.intent)
        probes = self._probes(identity, resolved)
        impacts = measure_impact(targets, probes, self.settings.impact_deadline_seconds)
        return tuple(impact.text() for impact in impacts)

    def _measure(
        self, identity: AgentIdentity, resolved: ResolvedRequest, record: RequestRecord
    ) -> None:
        try:
            lines: Sequence[str] = self.measure(identity, resolved)
        except BrokerError as e:
            lines = [f"impact unknown: {e.message}"]
        except Exception as e:  # noqa: BLE001 - informing approvers must not crash the broker
            log.exception("impact measurement failed", extra={"request_id": record.id})
            lines = [f"impact unknown: the measurement failed ({type(e).__name__})"]
        try:
            stored = self.store.set_impact(
                record.id, {"status": DONE, "lines": list(lines), "at": self.clock()}
            )
            self.audit.request_event("impact", "measured", "broker", record, impact=list(lines))
            if stored is not None:
                self.updated(stored)
        except Exception:  # noqa: BLE001 - the store or the notifier failed: the page says unknown
            log.exception("could not record a request's impact", extra={"request_id": record.id})

    def _probes(self, identity: AgentIdentity, resolved: ResolvedRequest) -> list[ImpactProbe]:
        """Probes holding a read credential of the request's scope and backend."""
        request = resolved.request
        if request.backend == "aws" and request.region is not None:
            return [AwsImpactProbe(self.reads.aws(identity, resolved), request.region)]
        if request.backend == "database":
            return [PostgresImpactProbe(self.reads.database(identity, resolved))]
        return []  # Vault: nothing to count; its lines say so
