"""broker.client.BrokerClient against a broker answering over real HTTP."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from broker_client import (
    ApprovalPending,
    Backend,
    BrokerClient,
    BrokerClientError,
    BrokerUnreachable,
    Denied,
    Expired,
    Frozen,
    Issued,
    PendingRequest,
    RequestState,
    Tier,
    format_seconds,
    refresh_windows,
)
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.client.conftest import READ, LiveBroker, free_port

INVOICE = "arn:aws:s3:::payments-prod-invoices/2026/11/batch.csv"
WRITE: tuple[str, str, Tier, Backend] = ("payments", "prod", "write", "aws")
LEDGER_DELETE: tuple[str, str, Tier, Backend] = ("ledger", "prod", "delete", "vault")
# Write and delete name what they change, on every backend.
OBSOLETE_KEY = ["ledger/prod/obsolete-key"]


def test_read_is_issued_at_once_with_the_issuers_field_names(live: LiveBroker) -> None:
    issued = live.client().request(*READ, "us-east-1")
    assert isinstance(issued, Issued)
    assert issued.backend == "aws" and issued.request_id.startswith("req_")
    assert issued.credentials["access_key_id"].startswith("ASIATEST")
    assert issued.expires_at.tzinfo is not None
    assert 3500 < issued.seconds_left(live.clock()) <= 3600
    process = issued.credential_process()
    assert process["Version"] == 1
    assert process["SecretAccessKey"] == issued.credentials["secret_access_key"]
    assert process["SessionToken"] == issued.credentials["session_token"]
    assert process["Expiration"].endswith("Z")
    env = issued.environment()
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_SESSION_TOKEN"] == issued.credentials["session_token"]


def test_no_secret_in_repr_or_str(live: LiveBroker) -> None:
    client = live.client()
    issued = client.request(*READ, "us-east-1")
    assert isinstance(issued, Issued)
    shown = repr(issued) + str(issued) + repr(client)
    assert "secret_access_key=***" in shown and "ASIATEST" in shown
    for secret in [*live.secrets(), live.token()]:
        assert secret not in shown
    assert issued.credentials["session_token"] not in str(issued.public())


def test_write_waits_for_an_approval_made_during_a_long_poll(live: LiveBroker) -> None:
    client = live.client()
    approver = live.decide_when_pending([("alice", "approve")])
    pending = client.request(
        *WRITE, "us-east-1", [INVOICE], justification="re-upload the corrected November batch"
    )
    assert isinstance(pending, PendingRequest)
    assert (pending.approvals_required, pending.approvals_received) == (1, 0)
    assert pending.approval_url == f"{live.url}/requests/{pending.request_id}"
    assert live.issuers["aws"].calls == []
    seen: list[RequestState] = []
    state = client.wait(pending.request_id, timeout=25, on_update=seen.append)
    approver.join()
    assert state.status == "approved" and state.approvals_received == 1
    assert [s.status for s in seen] == ["pending", "approved"]
    issued = client.collect(pending.request_id)
    assert issued.request_id == pending.request_id and issued.backend == "aws"
    with pytest.raises(Expired) as again:
        client.collect(pending.request_id)
    assert again.value.status == 410 and again.value.code == "gone"


def test_a_deny_ends_the_wait_with_the_reason(live: LiveBroker) -> None:
    client = live.client()
    live.decide_when_pending([("bob", "deny")])
    pending = client.request(*WRITE, "us-east-1", [INVOICE])
    assert isinstance(pending, PendingRequest)
    state = client.wait(pending.request_id, timeout=25)
    assert state.status == "denied" and state.final
    assert state.reason == "denied by bob: not now"
    with pytest.raises(Denied) as denied:
        client.complete(pending.request_id)
    assert denied.value.code == "denied" and denied.value.request_id == pending.request_id
    assert "denied by bob" in denied.value.message
    assert live.issuers["aws"].calls == []


def test_obtain_waits_out_the_mandatory_delay(live: LiveBroker) -> None:
    client = live.client("ledger-maintainer", clock=live.clock)
    pending = client.request(*LEDGER_DELETE, resources=OBSOLETE_KEY)
    assert isinstance(pending, PendingRequest) and pending.approvals_required == 2
    for approver in ("carol", "dave"):
        live.services.approvals.decide(pending.request_id, approver, "approve", via="page")
    delays: list[float] = []

    def on_update(state: RequestState) -> None:
        delays.append(state.delay_left(live.clock()))
        if state.status == "approved" and state.delay_left(live.clock()) > 0:
            live.clock.advance(state.delay_left(live.clock()) + 1)

    issued = client.complete(pending.request_id, timeout=25, on_update=on_update)
    assert issued.backend == "vault" and issued.credentials["token"].startswith("hvs.")
    assert 899 < delays[0] <= 900  # ledger's delete tier: a 15-minute pause after approval


def test_a_client_clock_ahead_of_the_brokers_retries_the_collect(live: LiveBroker) -> None:
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # the broker's clock catches up while we pause
        pauses.append(seconds)
        live.clock.advance(1000)

    client = BrokerClient(
        live.url,
        live.token("ledger-maintainer"),
        clock=lambda: live.clock() + 10_000,
        sleep=sleep,
    )
    pending = client.request(*LEDGER_DELETE, resources=OBSOLETE_KEY)
    assert isinstance(pending, PendingRequest)
    for approver in ("carol", "dave"):
        live.services.approvals.decide(pending.request_id, approver, "approve", via="page")
    assert client.complete(pending.request_id, timeout=25).backend == "vault"
    assert pauses == [1.0]


def test_wait_and_complete_give_up_after_their_timeout(live: LiveBroker) -> None:
    client = live.client()
    pending = client.request(*WRITE, "us-east-1", [INVOICE])
    assert isinstance(pending, PendingRequest)
    assert client.wait(pending.request_id, timeout=0).status == "pending"
    with pytest.raises(ApprovalPending) as still:
        client.complete(pending.request_id, timeout=0)
    assert still.value.request_id == pending.request_id and still.value.code == "pending"


def test_a_poll_answered_at_once_is_not_repeated_at_once(live: LiveBroker) -> None:
    """When every long-poll slot of the broker is taken, it answers at once; the client
    then waits a second before asking again, instead of asking hundreds of times."""
    client = live.client()
    pending = client.request(*WRITE, "us-east-1", [INVOICE])
    assert isinstance(pending, PendingRequest)
    slots = live.services.settings.threads // 2
    holders = [
        threading.Thread(target=client.status, args=(pending.request_id, 30)) for _ in range(slots)
    ]
    for holder in holders:
        holder.start()
    try:
        deadline = time.monotonic() + 10
        while live.polls() < slots and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the holders are waiting
        before = live.polls()
        assert client.wait(pending.request_id, timeout=3).status == "pending"
        assert live.polls() - before <= 6, live.polls() - before
    finally:
        live.services.approvals.decide(pending.request_id, "bob", "deny", via="page")
        for holder in holders:
            holder.join(10)


def test_frozen_agents_get_frozen(live: LiveBroker) -> None:
    live.freeze()
    with pytest.raises(Frozen) as frozen:
        live.client().request(*READ, "us-east-1")
    assert frozen.value.status == 403 and frozen.value.code == "frozen"
    assert "kill switch drill" in frozen.value.message


def test_broker_errors_keep_their_code_status_and_field(live: LiveBroker) -> None:
    client = live.client()
    with pytest.raises(BrokerClientError) as unknown:
        client.request("nope", "prod", "read", "aws", "us-east-1")
    assert (unknown.value.status, unknown.value.code, unknown.value.field) == (
        404,
        "not_found",
        "service",
    )
    assert unknown.value.http_request_id
    with pytest.raises(Denied) as forbidden:
        live.client("ledger-maintainer").request(*READ, "us-east-1")
    assert forbidden.value.code == "forbidden"
    with pytest.raises(BrokerClientError) as bad_token:
        BrokerClient(live.url, "not-a-jwt").scopes()
    assert (bad_token.value.status, bad_token.value.code) == (401, "unauthenticated")
    live.issuers["aws"].down = True
    with pytest.raises(BrokerClientError) as upstream:
        client.request(*READ, "eu-west-1")
    assert not isinstance(upstream.value, BrokerUnreachable)
    assert (upstream.value.status, upstream.value.code) == (503, "upstream_unavailable")


def test_rate_limits_carry_retry_after(live: LiveBroker) -> None:
    client = live.client()
    for _ in range(10):  # payments' write tier: 10/h
        client.request(*WRITE, "us-east-1", [INVOICE])
    with pytest.raises(BrokerClientError) as limited:
        client.request(*WRITE, "us-east-1", [INVOICE])
    assert limited.value.status == 429 and limited.value.code == "rate_limited"
    assert limited.value.retry_after is not None and limited.value.retry_after > 0


def test_an_unreachable_broker_is_broker_unreachable() -> None:
    token = "eyJ.secret-token-value.x"
    client = BrokerClient(f"http://127.0.0.1:{free_port()}", token, timeout=2)
    with pytest.raises(BrokerUnreachable) as down:
        client.request(*READ, "us-east-1")
    assert down.value.code == "unreachable" and down.value.status is None
    assert "connection refused" in down.value.message
    assert down.value.__cause__ is None and down.value.__suppress_context__
    assert token not in repr(down.value) + str(down.value)


@pytest.fixture()
def proxy_502() -> Iterator[str]:
    """A stand-in for a load balancer whose broker is gone: 502 with an HTML page."""

    @Request.application
    def app(request: Request) -> Response:
        if request.path.startswith("/v1/requests/"):
            return Response("<html>Oops</html>", status=500, content_type="text/html")
        return Response("<html>Bad Gateway</html>", status=502, content_type="text/html")

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_a_proxys_502_is_unreachable_but_other_pages_are_bad_responses(proxy_502: str) -> None:
    with pytest.raises(BrokerUnreachable) as gateway:
        BrokerClient(proxy_502, "t").scopes()
    assert gateway.value.status == 502
    with pytest.raises(BrokerClientError) as oops:
        BrokerClient(proxy_502, "t").status("req_" + "a" * 26)
    assert not isinstance(oops.value, BrokerUnreachable)
    assert (oops.value.status, oops.value.code) == (500, "bad_response")


def test_the_token_provider_is_asked_before_every_call(live: LiveBroker) -> None:
    handed: list[str] = []

    def provider() -> str:
        handed.append(live.token())
        return handed[-1]

    client = BrokerClient(live.url, token_provider=provider)
    client.scopes()
    client.scopes()
    assert len(handed) == 2 and handed[0] != handed[1]


def test_bad_arguments_fail_before_any_request(live: LiveBroker) -> None:
    client = live.client()
    cases: list[Callable[[], object]] = [
        lambda: client.status("../../v1/scopes"),
        lambda: client.status("req_" + "a" * 26, wait=31),
        lambda: client.collect("req_short"),
        lambda: BrokerClient(live.url),
        lambda: BrokerClient(live.url, "t", token_provider=lambda: "t"),
        lambda: BrokerClient("ftp://broker", "t"),
        lambda: BrokerClient(live.url, token_provider=lambda: " ").scopes(),
        lambda: client.request("payments", "prod", "read", "aws", resources="arn:x"),
    ]
    served = len(live.requests)
    for case in cases:
        with pytest.raises(BrokerClientError) as bad:
            case()
        assert bad.value.code == "invalid_argument"
    assert len(live.requests) == served


def test_scopes_lists_what_the_agent_may_request(live: LiveBroker) -> None:
    listing = live.client().scopes()
    assert listing["agent"] == "agent:payments-copilot"
    [payments] = listing["scopes"]
    tiers = {t["name"]: t for t in payments["tiers"]}
    assert tiers["write"]["approvals"] == 1 and tiers["delete"]["delay_seconds"] == 600


def test_formats_and_helpers() -> None:
    assert format_seconds(432) == "7:12"
    assert format_seconds(3723) == "1:02:03"
    assert format_seconds(-5) == "0:00"
    assert format_seconds(0.2) == "0:01"
    assert refresh_windows(3600) == (600, 300)
    assert refresh_windows(900) == (225, 112)
    assert refresh_windows(5) == (10, 5)
    issued = Issued(
        "req_x",
        "database",
        {"username": "u", "password": "p w'", "host": "h", "port": "5432", "database": "d"},
        dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    assert issued.export_lines().splitlines() == [
        "export PGDATABASE=d",
        "export PGHOST=h",
        "export PGPASSWORD='p w'\"'\"''",
        "export PGPORT=5432",
        "export PGUSER=u",
        "export BROKER_CREDENTIALS_EXPIRATION=2030-01-01T00:00:00Z",
    ]
    with pytest.raises(BrokerClientError) as wrong:
        issued.credential_process()
    assert wrong.value.code == "invalid_argument"
    with pytest.raises(BrokerClientError) as missing:
        Issued("req_x", "vault", {"accessor": "a"}, issued.expires_at).environment()
    assert missing.value.code == "bad_response" and "'token'" in missing.value.message
