"""One error shape, even for what gunicorn refuses before Flask: `broker serve` answers a
header too large, a request line too long or broken HTTP with the JSON body every other
error has, and identity.max_token_bytes is what limits a token (gunicorn's own header limit
no longer cuts in first)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from gunicorn.workers.gthread import ThreadWorker

from broker.devstack.processes import ServerProcess, free_port
from broker.serve_errors import JsonErrorWorker
from tests.fixtures.broker import make_broker


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("serve")
    made = make_broker(tmp_path)
    made.services.close()
    port = free_port()
    config = made.write_config(tmp_path / "broker.yaml")
    config.write_text(
        config.read_text()
        + f"listen: 127.0.0.1:{port}\nworkers: 1\nidentity: {{max_token_bytes: 16384}}\n"
    )
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(
        [sys.executable, "-m", "broker.cli", "serve", "--config", str(config)],
        tmp_path / "serve.log",
    )
    server.start(lambda: requests.get(f"{url}/healthz", timeout=1).ok, timeout=60)
    yield url
    server.stop()


def _json_error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message", "request_id"} and body["error"] == code
    assert body["request_id"] == response.headers["X-Request-ID"]
    return str(body["message"])


def _bearer(size: int) -> dict[str, str]:
    return {"Authorization": "Bearer " + "a" * size}


def test_an_8kb_header_gets_the_json_body(served: str) -> None:
    """8 KB of Authorization was gunicorn's HTML 431; now the broker judges the token."""
    response = requests.get(f"{served}/v1/scopes", headers=_bearer(8 * 1024), timeout=10)
    assert _json_error(response, 401, "unauthenticated") == "malformed token"
    huge = requests.get(f"{served}/v1/scopes", headers={"X-Filler": "x" * 70_000}, timeout=10)
    message = _json_error(huge, 431, "header_too_large")
    assert "x" * 20 not in huge.text and "larger than the broker accepts" in message


def test_max_token_bytes_takes_effect(served: str) -> None:
    within = requests.get(f"{served}/v1/scopes", headers=_bearer(12_000), timeout=10)
    assert _json_error(within, 401, "unauthenticated") == "malformed token"
    over = requests.get(f"{served}/v1/scopes", headers=_bearer(17_000), timeout=10)
    assert _json_error(over, 401, "unauthenticated") == "token is larger than 16384 bytes"


def test_a_long_request_line_and_broken_http(served: str) -> None:
    long_line = requests.get(f"{served}/v1/requests/{'r' * 9000}", timeout=10)
    _json_error(long_line, 414, "uri_too_long")
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        answer = sock.recv(65536).decode("latin-1")
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 ") and "application/json" in head
    assert '"error": "bad_request"' in body and "<html>" not in answer


def test_the_app_alone_answers_a_large_token_in_json(tmp_path: Path) -> None:
    """Without gunicorn (tests, other WSGI servers) the same limit holds."""
    made = make_broker(tmp_path)
    try:
        response = made.client.get("/v1/scopes", headers=_bearer(9000))
        assert response.status_code == 401
        assert response.get_json()["message"] == "token is larger than 8192 bytes"
    finally:
        made.services.close()


def test_the_worker_tells_the_arbiter_it_is_alive_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    told: list[float] = []
    now = [1000.0]
    monkeypatch.setattr(ThreadWorker, "notify", lambda self: told.append(now[0]))
    monkeypatch.setattr("broker.serve_errors.time.monotonic", lambda: now[0])
    worker = object.__new__(JsonErrorWorker)  # only its loop's heartbeat is exercised

    for step in (0.0, 0.25, 0.25, 0.25, 0.25, 0.5, 2.0):
        now[0] += step
        worker.notify()

    assert told == [1000.0, 1001.0, 1003.5]
