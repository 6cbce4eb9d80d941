"""Header and path injection, overlong and absurd headers, unexpected methods.

Attacks go through the WSGI app and, where the HTTP framing itself is the attack (CR/LF,
folded or overlong header lines, lying Content-Length), as raw bytes over a real socket to
the broker served on localhost. The answer is always a clear 4xx (the JSON error shape for
the API, an HTML page for the approval pages), never a 500; nothing an attacker sends comes
back as a header, a second log line or markup; and no approval link is used up.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.logs import JsonFormatter
from tests.adversarial.support import ADMIN, assert_clean_error, issuer_calls, patient_broker
from tests.approvals.flows import WRITE_PAYMENTS, approve_via_page, link_token, open_request
from tests.fixtures.broker import READ_PAYMENTS, Broker
from tests.fixtures.browser import LiveServer

GENERATED_ID = re.compile(r"[0-9a-f]{16}")
UNKNOWN_ID = "req_" + "a" * 26
ROUTES = [
    ("/healthz", {"GET"}),
    ("/readyz", {"GET"}),
    ("/metrics", {"GET"}),
    ("/v1/openapi.json", {"GET"}),
    ("/v1/credentials", {"POST"}),
    ("/v1/scopes", {"GET"}),
    (f"/v1/requests/{UNKNOWN_ID}", {"GET", "DELETE"}),
    (f"/v1/issuances/{UNKNOWN_ID}", {"GET"}),
    (f"/v1/requests/{UNKNOWN_ID}/credentials", {"POST"}),
    ("/v1/revoke", {"POST"}),
    ("/v1/unfreeze", {"POST"}),
    ("/approve/some-token", {"GET", "POST"}),
    (f"/requests/{UNKNOWN_ID}", {"GET"}),
    ("/slack/interactions", {"POST"}),
]


@pytest.fixture()
def target(tmp_path: Path) -> Iterator[Broker]:
    made = patient_broker(tmp_path)
    yield made
    made.services.close()


@pytest.fixture()
def served(target: Broker, live_server: LiveServer) -> Broker:
    live_server.app = target.app
    return target


def raw_http(server: LiveServer, request: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send exact bytes; return the status, the header lines and the body of the answer."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
    return status, headers, body


def request_bytes(
    method: str, path: str, headers: dict[str, str] | list[tuple[str, str]], body: bytes = b""
) -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- X-Request-ID -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "<script>alert(1)</script>",
        "abcdefgh\tijk",
        "abc def ghij",
        "abcdefg",  # too short
        "a" * 65,  # too long
        "abcdefgh%0d%0aSet-Cookie:%20evil=1",
        "abcdefgh\\r\\nX-Injected: 1",
        '"abcdefgh"',
        "abcdefgh;drop",
        "abcdéfgh",
        "a" * 100_000,
    ],
)
def test_a_bad_request_id_is_replaced_everywhere(
    target: Broker, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    caplog.set_level(logging.INFO, logger="broker.access")
    response = target.client.post(
        "/v1/credentials",
        json=READ_PAYMENTS,
        headers={**target.headers(), "X-Request-ID": given.encode("utf-8").decode("latin-1")},
    )
    assert response.status_code == 200
    echoed = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(echoed), echoed
    [access] = [r for r in caplog.records if r.name == "broker.access"]
    assert getattr(access, "request_id", None) == echoed
    line = JsonFormatter().format(access)
    assert "\n" not in line and given not in line and "evil" not in line


def test_a_good_request_id_is_kept_everywhere(
    target: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="broker.access")
    given = "trace-4f2A_9.z"
    response = target.client.post(
        "/v1/credentials",
        json={**READ_PAYMENTS, "tier": "nope"},
        headers={**target.headers(), "X-Request-ID": given},
    )
    assert assert_clean_error(response, 400)["request_id"] == given
    assert response.headers["X-Request-ID"] == given
    assert [getattr(r, "request_id", None) for r in caplog.records] == [given]


def test_crlf_in_headers_over_real_http(served: Broker, live_server: LiveServer) -> None:
    """Bare CR, folded continuation lines and smuggled header lines in X-Request-ID and
    Authorization: never a second response header, never a 500."""
    token = served.token()
    attempts = [
        [("X-Request-ID", "abcdefgh\rSet-Cookie: evil=1")],
        [("X-Request-ID", "abcdefgh\r\n Set-Cookie: evil=1")],  # an obs-fold continuation
        [("X-Request-ID", "abcdefgh\r\n\tX-Injected: 1")],
        [("Authorization", f"Bearer {token}\r\n Set-Cookie: evil=1")],
        [("Authorization", f"Bearer {token}\rX-Injected: 1")],
        [("Authorization", "Bearer \x00" + token)],
    ]
    for headers in attempts:
        body = json.dumps(READ_PAYMENTS).encode()
        headers = [*headers, ("Content-Type", "application/json")]
        headers.append(("Content-Length", str(len(body))))
        status, answer, _ = raw_http(
            live_server, request_bytes("POST", "/v1/credentials", headers, body)
        )
        assert status < 500, (headers, status)
        names = [name for name, _ in answer]
        assert "set-cookie" not in names and "x-injected" not in names, answer
        for name, value in answer:
            if name == "x-request-id":
                assert GENERATED_ID.fullmatch(value) or value == "abcdefgh", value


# -- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/requests/..",
        "/v1/requests/%2e%2e",
        "/v1/requests/..%2f..%2fv1%2fscopes",
        "/v1/requests/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/requests/req_aaaaaaaaaaaaaaaaaaaaaaaaaa%00",
        "/v1/requests/req_aaaaaaaaaaaaaaaaaaaaaaaaa%0d%0aSet-Cookie:%20evil=1",
        "/v1/requests/req_%EF%BC%A1" + "a" * 25,  # a fullwidth 'A'
        "/v1/requests/REQ_" + "A" * 26,
        "/v1/requests/req_" + "a" * 26 + "/../../scopes",
        "/v1/requests/%3Cscript%3E",
        "/v1/requests/" + "a" * 8000,
        "/v1/requests/req_" + "a" * 26 + "/credentials/..",
        "/v1/requests/req_" + "a" * 26 + "%2fcredentials",
        "/v1/requests/req_" + "\u0661" * 26,  # Arabic-Indic digits are alphanumeric
    ],
)
def test_odd_request_id_paths_are_refused(target: Broker, path: str) -> None:
    for method in ("GET", "POST"):
        response = target.client.open(path, method=method, headers=target.headers())
        body = assert_clean_error(response, (400, 404, 405))
        assert "<script" not in json.dumps(body) and "Set-Cookie" not in str(response.headers)


@pytest.mark.parametrize(
    "suffix",
    [
        "..",
        "%2e%2e",
        "..%2f..%2fv1%2fscopes",
        "%00",
        "%0d%0aSet-Cookie:%20evil=1",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "a" * 8000,
        "eyJhbGciOiJub25lIn0.eyJyZXEiOiJ4In0.",
    ],
)
def test_odd_approval_tokens_leave_the_real_link_usable(target: Broker, suffix: str) -> None:
    request_id = open_request(target, WRITE_PAYMENTS)
    token = link_token(target, request_id, "alice")
    for path in (f"/approve/{suffix}", f"/approve/{token}{suffix}", f"/approve/{suffix}{token}"):
        for method in ("GET", "POST"):
            response = target.client.open(path, method=method, data={"decision": "approve"})
            assert response.status_code in (401, 403, 404), (path, response.status_code)
            text = response.get_data(as_text=True)
            assert "<script>" not in text and "Traceback" not in text
            assert "Set-Cookie: evil" not in str(response.headers)
    assert target.services.store.approvals_for(request_id) == []
    assert approve_via_page(target.app.test_client(), token).status_code == 200


def test_crlf_and_traversal_in_the_request_line(served: Broker, live_server: LiveServer) -> None:
    """Raw bytes in the request line: the server or the app refuses, nothing is echoed."""
    for target_path in (
        "/v1/requests/req_aaaaaaaaaaaaaaaaaaaaaaaaaa\rSet-Cookie: evil=1",
        "/approve/abc\x00def",
        "/../../../etc/passwd",
        "/v1/../v1/scopes",
        "/approve/" + "%" * 100,
        "/approve/%ff%fe%fd",
        "/v1/requests/%c0%ae%c0%ae",  # overlong UTF-8 for '..'
    ):
        status, answer, body = raw_http(
            live_server,
            request_bytes("GET", target_path, {"Authorization": f"Bearer {served.token()}"}),
        )
        assert 400 <= status < 500 or (status == 200 and target_path == "/v1/../v1/scopes"), (
            target_path,
            status,
        )
        assert "set-cookie" not in [name for name, _ in answer]
        assert b"/etc/passwd" not in body and b"root:" not in body


# -- sizes and lengths --------------------------------------------------------------------


def test_an_overlong_bearer_token_is_refused_by_size(target: Broker) -> None:
    for size in (8193, 100_000, 1_000_000):
        response = target.client.get(
            "/v1/scopes", headers={"Authorization": "Bearer " + "a" * size}
        )
        assert "larger than 8192 bytes" in assert_clean_error(response, 401)["message"]


def test_overlong_and_numerous_headers_over_real_http(
    served: Broker, live_server: LiveServer
) -> None:
    token = served.token()
    cases = [
        [("Authorization", "Bearer " + "a" * 70_000)],
        [("X-Request-ID", "b" * 70_000), ("Authorization", f"Bearer {token}")],
        [(f"X-Filler-{n}", "x" * 10) for n in range(150)] + [("Authorization", f"Bearer {token}")],
        [("Cookie", "broker-session=" + "c" * 60_000), ("Authorization", f"Bearer {token}")],
    ]
    for headers in cases:
        status, _, _ = raw_http(live_server, request_bytes("GET", "/v1/scopes", headers))
        assert 200 <= status < 500, (headers[0][0], status)


@pytest.mark.parametrize(
    "length", ["99999999999999999999999999", "65537", "-1", "abc", "1e3", " 12", "0x10"]
)
def test_absurd_content_lengths(served: Broker, live_server: LiveServer, length: str) -> None:
    """A lying Content-Length never makes the broker wait for a body or fail with a 500."""
    body = json.dumps(READ_PAYMENTS).encode()
    for path, agent in (("/v1/credentials", "payments-copilot"), ("/v1/revoke", ADMIN)):
        headers = {
            "Authorization": f"Bearer {served.token(agent)}",
            "Content-Type": "application/json",
            "Content-Length": length,
        }
        status, _, answer = raw_http(live_server, request_bytes("POST", path, headers, body))
        assert 400 <= status < 500, (path, length, status, answer[:200])
    assert issuer_calls(served) == 0


def test_a_huge_chunked_body_is_refused(served: Broker, live_server: LiveServer) -> None:
    chunk = b"[" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(40)) + b"0\r\n\r\n"
    headers = {
        "Authorization": f"Bearer {served.token()}",
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    status, _, _ = raw_http(live_server, request_bytes("POST", "/v1/credentials", headers, body))
    assert status in (400, 413), status


def test_content_length_and_chunked_together(served: Broker, live_server: LiveServer) -> None:
    """A request-smuggling shape: both framings. Refused or read one way, never a 500."""
    smuggled = b"0\r\n\r\nPOST /v1/revoke HTTP/1.1\r\nHost: x\r\n\r\n"
    headers = {
        "Authorization": f"Bearer {served.token()}",
        "Content-Type": "application/json",
        "Content-Length": "4",
        "Transfer-Encoding": "chunked",
    }
    status, _, _ = raw_http(
        live_server, request_bytes("POST", "/v1/credentials", headers, smuggled)
    )
    assert status < 500
    assert served.services.store.count_requests("pending") == 0


# -- methods --------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "allowed"), ROUTES, ids=[p for p, _ in ROUTES])
def test_unexpected_methods_get_405(target: Broker, path: str, allowed: set[str]) -> None:
    for method in ("PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "BREW", "POST", "GET"):
        if method in allowed:
            continue
        response = target.client.open(path, method=method, headers=target.headers())
        body = assert_clean_error(response, 405)
        assert body["error"] == "method_not_allowed"
        assert set(response.headers["Allow"].split(", ")) >= allowed
    options = target.client.open(path, method="OPTIONS")
    assert options.status_code == 200 and set(options.headers["Allow"].split(", ")) >= allowed


def test_method_override_headers_are_ignored(target: Broker) -> None:
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        response = target.client.get(
            "/v1/credentials", headers={**target.headers(), header: "POST"}
        )
        assert_clean_error(response, 405)
    assert issuer_calls(target) == 0


def test_unknown_paths_are_json_404s(target: Broker) -> None:
    for path in ("/v2/credentials", "/v1/", "/admin", "/.env", "/v1/credentials/", "/static/x"):
        response = target.client.get(path, headers=target.headers())
        assert assert_clean_error(response, 404)["error"] == "not_found"


def test_a_strange_method_over_real_http(served: Broker, live_server: LiveServer) -> None:
    for method in ("BREW", "DELETE", "CONNECT"):
        status, _, _ = raw_http(live_server, request_bytes(method, "/v1/credentials", {}))
        assert 400 <= status < 500, (method, status)
