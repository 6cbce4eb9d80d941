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
from typing import Any

import boto3
from botocore.config import Config

from broker.approvals.intent_view import DONE
from broker.audit.recorder import AuditRecorder
from broker.config import Settings
from broker.errors import BrokerError, Frozen
from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import STS_MIN_SECONDS, ResolvedRequest
from broker.intent.impact import ImpactProbe, impact_targets, measure_impact
from broker.intent.impact_aws import AwsImpactProbe, ClientFactory
from broker.issuance import IssuanceService
from broker.issuers.base import IssuedCredential, IssueRequest
from broker.policy.compiler import session_policy
from broker.policy.grant import compile_grant
from broker.policy.iam_actions import IamDatabase
from broker.store.base import RequestStore
from broker.store.records import FreezeRecord, RequestRecord

log = logging.getLogger(__name__)

# Every call races the deadline: fail fast rather than retry.
_PROBE_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 1})


def in_background(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="impact", daemon=True).start()


def aws_clients(credential: IssuedCredential, endpoint_url: str | None) -> ClientFactory:
    """boto3 clients holding ``credential`` (a read session), with short timeouts."""
    session = boto3.Session(
        aws_access_key_id=credential.public["access_key_id"],
        aws_secret_access_key=credential.secret["secret_access_key"],
        aws_session_token=credential.secret["session_token"],
    )

    make: Callable[..., Any] = session.client  # any service: boto3's stubs want literals

    def client(service: str, region: str) -> Any:
        return make(service, region_name=region, endpoint_url=endpoint_url, config=_PROBE_CONFIG)

    return client


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class ImpactMeasurer:
    settings: Settings
    store: RequestStore
    issuance: IssuanceService
    audit: AuditRecorder
    iam: IamDatabase
    frozen: Callable[[str, str | None, str | None], FreezeRecord | None]
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
        """Probes holding a read credential of the request's scope (AWS intents)."""
        request = resolved.request
        scope, env = resolved.scope, resolved.environment
        freeze = self.frozen(identity.subject, scope.service, env.name)
        if freeze is not None:
            raise Frozen(f"nothing is issued while {freeze.describe()} is frozen")
        if request.backend != "aws" or request.region is None:
            return []
        read = IssueRequest(
            request_id=new_request_id(self.clock()),
            identity=identity,
            scope=scope,
            environment=env,
            region=request.region,
            tier="read",
            backend="aws",
            resources=(),
            grant=compile_grant(
                scope,
                env,
                "read",
                "aws",
                request.region,
                (),
                STS_MIN_SECONDS,
                session_policy(scope, env, request.region, "read", self.iam, ()),
            ),
        )
        credential = self.issuance.mint(read).credential
        clients = aws_clients(credential, self.settings.aws.endpoint_url)
        return [AwsImpactProbe(clients, request.region)]
