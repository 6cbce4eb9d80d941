"""What the stand-in decides where AWS's documents give it nothing to read: a resource it
cannot name, a condition it cannot evaluate. Both resolve in the safe direction."""

from __future__ import annotations

import pytest

from broker.devstack.standin.conditions import UnsupportedCondition, operator_matches, parse_date
from broker.devstack.standin.evaluation import Policy, evaluate
from broker.devstack.standin.statements import Principal, Request
from tests.devstack.standin_cases import ACCOUNT, ROLE, SESSION, SESSION_CONTEXT, allow, deny, doc

CALLER = Principal(SESSION, ACCOUNT, ROLE)


def decide(resource: str | None, *statements: dict[str, object]) -> str:
    request = Request(CALLER, "sqs:SendMessage", resource, SESSION_CONTEXT)
    return evaluate(request, [Policy("identity", "p", doc(*statements))]).result


def test_an_unnamed_resource_is_allowed_only_by_resource_star() -> None:
    assert decide(None, allow("sqs:SendMessage", "*")) == "Allowed"
    assert decide(None, allow("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q")) == (
        "ImplicitlyDenied"
    )


def test_a_deny_applies_to_an_unnamed_resource_whatever_it_names() -> None:
    assert decide(None, allow("sqs:*"), deny("sqs:SendMessage", "arn:aws:sqs:*:*:other")) == (
        "ExplicitlyDenied"
    )


def test_an_unknown_condition_operator_never_proves_an_allow_and_always_denies() -> None:
    odd = {"Condition": {"StringSoundsLike": {"aws:SourceIdentity": "agent"}}}
    assert decide("*", allow("sqs:*", "*", **odd)) == "ImplicitlyDenied"
    assert decide("*", allow("sqs:*"), deny("sqs:*", "*", **odd)) == "ExplicitlyDenied"


def test_a_bad_date_in_a_condition_is_unsupported_not_a_crash() -> None:
    with pytest.raises(UnsupportedCondition):
        operator_matches("DateLessThan", "aws:CurrentTime", "yesterday", SESSION_CONTEXT)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-11-20T12:00:09Z", 1795176009),
        ("2026-11-20T12:00:09.500Z", 1795176009.5),
        ("2026-11-20T13:00:09+01:00", 1795176009),
        ("1795176009", 1795176009),
        ("2026-11-20", 1795132800),
    ],
)
def test_dates_in_every_documented_form(text: str, epoch: float) -> None:
    assert parse_date(text).timestamp() == epoch
