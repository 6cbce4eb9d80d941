"""The stand-in's evaluator on AWS's documented evaluation cases, cross-checked against an
independent evaluator (iam-simulate) on the same cases."""

from __future__ import annotations

from typing import Any

import pytest

from broker.devstack.standin.evaluation import Policy, evaluate
from broker.devstack.standin.statements import Principal, Request
from tests.devstack.standin_cases import CASES, Case
from tests.fixtures.iam_oracle import simulate


def principal_of(case: Case) -> Principal:
    account = case.principal.split(":")[4]
    role = case.context.get("aws:PrincipalArn") if ":assumed-role/" in case.principal else None
    return Principal(case.principal, account, role)


def stand_in(case: Case) -> str:
    request = Request(principal_of(case), case.action, case.resource, case.context)
    identity = [Policy("identity", f"policy {i}", d) for i, d in enumerate(case.identity)]
    session = [Policy("session", "session policy", case.session)] if case.session else []
    trust = Policy("trust", "trust policy", case.trust) if case.trust else None
    return evaluate(request, identity, session, trust, case.resource_account).result


def simulation(case: Case) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request": {
            "principal": case.principal,
            "action": case.action,
            "resource": {"resource": case.resource, "accountId": case.resource_account},
            "contextVariables": case.context,
        },
        "identityPolicies": [
            {"name": f"policy{i}", "policy": d} for i, d in enumerate(case.identity)
        ],
    }
    if case.session is not None:
        body["sessionPolicy"] = case.session
    if case.trust is not None:
        body["resourcePolicy"] = case.trust
    return body


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_documented_case(case: Case) -> None:
    assert stand_in(case) == case.expected


def test_an_independent_evaluator_agrees_on_every_case() -> None:
    verdicts = simulate([simulation(case) for case in CASES])
    disagreements = []
    for case, verdict in zip(CASES, verdicts, strict=True):
        theirs = verdict.get("result") or f"error: {verdict.get('error')}"
        if theirs != case.expected or stand_in(case) != case.expected:
            disagreements.append(
                f"{case.name}: expected {case.expected}, "
                f"iam-simulate {theirs}, stand-in {stand_in(case)}"
            )
    print(f"iam-simulate agrees on {len(CASES) - len(disagreements)}/{len(CASES)} cases")
    assert not disagreements, "\n".join(disagreements)
