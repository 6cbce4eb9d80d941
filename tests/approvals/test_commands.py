"""`broker approvals link`: an operator prints an approver's personal link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    approve_via_page,
    open_request,
)
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.cli import run_cli


@pytest.fixture()
def setup(tmp_path: Path) -> Any:
    """A broker and a config file naming the same state (keys, SQLite store) and URL."""
    made = make_broker(tmp_path)
    yield made, made.write_config(tmp_path / "broker.yaml")
    made.services.close()


def test_the_printed_link_opens_the_page_and_decides(
    setup: tuple[Broker, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    made, config = setup
    request_id = open_request(made, WRITE_PAYMENTS)
    code, out, err = run_cli(
        capsys,
        "approvals",
        "link",
        "--request",
        request_id,
        "--approver",
        "bob",
        "--config",
        str(config),
    )
    assert code == 0, err
    link = out.strip()
    assert link.startswith("http://127.0.0.1:8080/approve/")
    token = link.rsplit("/", 1)[1]
    claims = made.services.links.parse(token, now=made.clock())
    assert (claims.request_id, claims.approver) == (request_id, "bob")
    assert approve_via_page(made.client, token).status_code == 200
    [minted] = [
        r for r in made.services.store.audit_records(request_id=request_id) if r.action == "link"
    ]
    assert minted.outcome == "minted" and minted.actor.startswith("operator:")
    assert minted.details["approver"] == "bob" and token not in repr(minted)


@pytest.mark.parametrize(
    ("request_id", "approver", "message"),
    [
        ("req_" + "a" * 26, "bob", "no request req_"),
        ("REQUEST", "bob", "malformed request id"),
        (None, "zed", "'zed' is not an approver in "),
    ],
)
def test_refusals_are_one_line_errors(
    setup: tuple[Broker, Path],
    capsys: pytest.CaptureFixture[str],
    request_id: str | None,
    approver: str,
    message: str,
) -> None:
    made, config = setup
    real = open_request(made, WRITE_PAYMENTS)
    code, out, err = run_cli(
        capsys,
        "approvals",
        "link",
        "--request",
        request_id or real,
        "--approver",
        approver,
        "--config",
        str(config),
    )
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_no_link_for_a_closed_request(
    setup: tuple[Broker, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    made, config = setup
    request_id = open_request(made, WRITE_PAYMENTS)
    made.services.approvals.decide(request_id, "bob", "deny", "link")
    code, out, err = run_cli(
        capsys,
        "approvals",
        "link",
        "--request",
        request_id,
        "--approver",
        "alice",
        "--config",
        str(config),
    )
    assert code == 1 and out == "" and "is already denied" in err


def _link(capsys: pytest.CaptureFixture[str], request_id: str, approver: str, *more: str) -> Any:
    return run_cli(
        capsys, "approvals", "link", "--request", request_id, "--approver", approver, *more
    )


def test_no_link_for_someone_who_cannot_approve_that_tier(
    setup: tuple[Broker, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """alice approves payments' writes, not the ledger's deletes (group dba): a link would
    be a capability she must not hold."""
    made, config = setup
    request_id = open_request(made, DELETE_LEDGER, agent=LEDGER_AGENT)
    code, out, err = _link(capsys, request_id, "alice", "--config", str(config))
    assert code == 1 and out == ""
    assert "no link minted: alice is not an approver for tier delete of ledger" in err
    assert not [
        r for r in made.services.store.audit_records(request_id=request_id) if r.action == "link"
    ]
    code, out, _ = _link(capsys, request_id, "carol", "--config", str(config))
    assert code == 0 and "/approve/" in out


def test_without_a_config_nobody_is_blamed(
    setup: tuple[Broker, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made, _ = setup
    monkeypatch.delenv("BROKER_CONFIG", raising=False)
    request_id = open_request(made, WRITE_PAYMENTS)
    code, out, err = _link(capsys, request_id, "carol")
    assert code == 1 and out == ""
    assert "no broker config was given" in err and "--config" in err
    assert "carol" not in err
