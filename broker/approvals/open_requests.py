"""The open requests a revocation reaches: what the kill switch cancels.

One selection for the approval service, which cancels them, and for the command line's
kill switch, which first looks whether there is any before it builds that service.
"""

from __future__ import annotations

from broker.policy.decision import OPEN_STATES
from broker.store.base import RequestStore
from broker.store.records import Reach, RequestRecord


def open_requests(store: RequestStore, reach: Reach, limit: int) -> list[RequestRecord]:
    """The pending or approved requests ``reach`` names, most recent first, at most ``limit``."""
    request_id = reach.get("request_id")
    if request_id is not None:
        found = store.get_request(request_id)
        return [found] if found is not None and found.status in OPEN_STATES else []
    return store.list_requests(
        agent_subject=reach.get("agent_subject"),
        service=reach.get("service"),
        environment=reach.get("environment"),
        statuses=OPEN_STATES,
        limit=limit,
    )
