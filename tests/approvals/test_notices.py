"""What the approvers' message says about each state of a request."""

from __future__ import annotations

import pytest

from broker.approvals.notices import status_detail
from tests.policy.test_decision import record


@pytest.mark.parametrize(
    ("status", "changes", "detail"),
    [
        ("pending", {"approvals_required": 2}, "1 of 2 approvals so far"),
        ("approved", {}, "approved"),
        ("approved", {"delay_seconds": 600}, "approved; collectable after a 600s delay"),
        ("denied", {"reason": "denied by bob: wrong batch"}, "denied by bob: wrong batch"),
        ("denied", {}, "denied"),
        ("expired", {}, "expired before anyone decided"),
        ("collected", {}, "credentials collected by the agent"),
        ("cancelled", {"reason": "cancelled by the kill switch"}, "cancelled by the kill switch"),
        ("cancelled", {}, "cancelled"),
    ],
)
def test_each_state_has_its_line(status: str, changes: dict[str, object], detail: str) -> None:
    assert status_detail(record(status, **changes), approvals=1) == detail
