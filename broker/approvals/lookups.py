"""An agent naming a request id that is not its own learns nothing, and is on the record.

Status, long polls, collection, withdrawal and issuance lookups answer another agent's
request id exactly as an unknown one (the same 404, code and body), so probing ids tells an
agent nothing about other agents' requests. Both are audited (``lookup refused``, with the
operation and the id): the owner's timeline shows who tried, and the two answers cost the
same work (the same reads and one audit record), so their timing does not tell them apart.
"""

from __future__ import annotations

from typing import Protocol

from broker.audit.actions import LOOKUP
from broker.audit.recorder import AuditRecorder
from broker.identity.model import AgentIdentity
from broker.store.base import IssuedStore, RequestStore

ANOTHER_AGENTS = "another agent's request"
UNKNOWN = "no such request"


class LookupStore(RequestStore, IssuedStore, Protocol):
    """Requests and issued records: an id may name either (reads have no request)."""


def record_refused_lookup(
    store: LookupStore,
    audit: AuditRecorder,
    identity: AgentIdentity,
    request_id: str,
    operation: str,
) -> None:
    """Audit a lookup answered as unknown, saying whether the id is another agent's."""
    request = store.get_request(request_id)
    owners = {r.agent_key for r in store.issued_for_request(request_id)}
    if request is not None:
        owners.add(request.agent_key)
    foreign = bool(owners - {identity.key})
    audit.record(
        LOOKUP,
        "refused",
        identity.principal,
        reason=ANOTHER_AGENTS if foreign else UNKNOWN,
        request_id=request_id,
        operation=operation,
    )
