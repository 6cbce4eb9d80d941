"""The `broker dev` banner: requests made from the scopes actually loaded, each of which the
demo agent may send, with an approver who may approve it."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from broker.devstack.banner import (
    Endpoints,
    demo_requests,
    demo_scope,
    render,
    windows_in_force,
)
from broker.devstack.stack import DEV_APPROVERS, DEV_GROUPS
from broker.identity.model import AgentIdentity
from broker.intake import parse_request, resolve
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import ScopeSet, load_scope_set
from tests.fixtures.broker import test_settings as broker_settings

ROOT = Path(__file__).resolve().parents[2]


def scopes(tmp_path: Path, *names: str) -> ScopeSet:
    directory = tmp_path / "scopes"
    directory.mkdir()
    for name in names:
        shutil.copy(ROOT / "scopes" / name, directory / name)
    result = load_scope_set(directory, LintContext(iam=iam_database()))
    assert not result.problems
    return result.scope_set


@pytest.mark.parametrize(
    ("files", "agent", "service", "backend"),
    [
        (("payments.yaml", "ledger-secrets.yaml"), "payments-copilot", "payments", "aws"),
        (("ledger-secrets.yaml",), "ledger-maintainer", "ledger", "vault"),
        (("deploy-pipeline.yaml",), "release-bot", "deploy", "aws"),
    ],
)
def test_the_banner_requests_are_valid_for_the_demo_agent(
    tmp_path: Path, files: tuple[str, ...], agent: str, service: str, backend: str
) -> None:
    scope_set = scopes(tmp_path, *files)
    settings = broker_settings(tmp_path, approvers=DEV_APPROVERS, groups=DEV_GROUPS)
    scope = demo_scope(scope_set, agent)
    assert scope is not None and scope.service == service
    demo = demo_requests(scope, settings.approvers_for)
    identity = AgentIdentity(issuer="local", subject=f"agent:{agent}")
    assert demo.read["backend"] == backend
    assert demo.write is not None and demo.approver is not None
    for body in (demo.read, demo.write):
        resolved = resolve(parse_request(body), scope_set, identity, iam_database())
        assert resolved.request.service == service
    rule = scope.tiers["write"].approval
    assert rule is not None
    assert demo.approver in settings.approvers_for(rule.approvers, rule.groups)

    text = render(
        Endpoints("http://b", "http://v", "http://a", tmp_path / "a.log", None, tmp_path / "c"),
        agent,
        "TOKEN",
        demo,
    )
    assert f'"service": "{service}"' in text and f"--approver {demo.approver} " in text
    assert "demo" in str(demo.write["resources"]) or "2026" in str(demo.write["resources"])
    if service != "payments":
        assert "payments" not in text


def test_an_agent_no_scope_admits_is_told_so(tmp_path: Path) -> None:
    scope_set = scopes(tmp_path, "ledger-secrets.yaml")
    assert demo_scope(scope_set, "payments-copilot") is None
    text = render(
        Endpoints("http://b", "http://v", "http://a", tmp_path / "a.log", None, tmp_path / "c"),
        "payments-copilot",
        "TOKEN",
        None,
    )
    assert "may request no scope" in text


def test_the_change_freezes_in_force_are_named_where_the_demo_starts(tmp_path: Path) -> None:
    """On a weekend the example scope refuses delete (and over the year-end close, write):
    the banner says so, so a newcomer's first 403 change_freeze is not a surprise."""
    scope_set = scopes(tmp_path, "payments.yaml")
    endpoints = Endpoints(
        "http://b", "http://v", "http://a", tmp_path / "a.log", None, tmp_path / "c"
    )
    saturday = dt.datetime(2026, 12, 5, 17, 0, tzinfo=dt.UTC).timestamp()
    wednesday = dt.datetime(2026, 12, 9, 17, 0, tzinfo=dt.UTC).timestamp()
    closing = dt.datetime(2026, 12, 23, 17, 0, tzinfo=dt.UTC).timestamp()  # a Wednesday
    text = render(endpoints, "payments-copilot", "T", None, windows_in_force(scope_set, saturday))
    assert "payments: 'weekend deletes'" in text and "stops delete requests" in text
    assert "403 change_freeze" in text
    quiet = render(endpoints, "payments-copilot", "T", None, windows_in_force(scope_set, wednesday))
    assert "403 change_freeze" not in quiet
    text = render(endpoints, "payments-copilot", "T", None, windows_in_force(scope_set, closing))
    assert "'year-end close'" in text and "stops write, delete requests" in text
