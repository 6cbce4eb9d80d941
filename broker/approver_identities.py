"""One person, one approver: no two configured approvers may share an email, a Slack user
or an OIDC subject. The two-person rules count approvers; two entries for one person would
let that person count twice, and a Slack click would always be the first entry's."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic_core import InitErrorDetails

from broker.schema import problem

IDENTITY_ATTRIBUTES = ("email", "slack_user_id", "oidc_subject")


def shared_identities(approvers: Mapping[str, Any]) -> Iterator[InitErrorDetails]:
    """A problem at each approver whose identity an earlier approver already has (emails
    compared without case, as the sign-in matches them)."""
    for attribute in IDENTITY_ATTRIBUTES:
        first: dict[str, str] = {}
        for name, approver in approvers.items():
            value = getattr(approver, attribute, None)
            if not value:
                continue
            key = value.casefold() if attribute == "email" else value
            if key in first:
                yield problem(
                    f"is also {first[key]}'s: one person is one approver (the two-person "
                    "rules count people)",
                    "approvers",
                    name,
                    attribute,
                )
            else:
                first[key] = name
