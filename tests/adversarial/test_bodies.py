"""Hostile JSON bodies: oversized, deeply nested, malformed, odd types and encodings.

Every one gets a clear 4xx in the one error shape, nothing is issued or opened, and the
broker goes on serving the next honest request. Each endpoint that reads a JSON body is
attacked (the credentials API and the admin kill switch), with a verified agent, so the
attack reaches the body parser instead of stopping at authentication.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.api.common import MAX_JSON_DEPTH
from tests.adversarial.support import ADMIN, assert_clean_error, issuer_calls, patient_broker
from tests.fixtures.broker import READ_PAYMENTS, Broker

LIMIT = 64 * 1024  # Settings.max_body_bytes default
ENDPOINTS = [
    ("/v1/credentials", "payments-copilot"),
    ("/v1/revoke", ADMIN),
    ("/v1/unfreeze", ADMIN),
]
READ_JSON = json.dumps(READ_PAYMENTS)

# (name, body, expected status, a phrase of the message)
HOSTILE: list[tuple[str, bytes, int, str]] = [
    ("over the limit", b'{"justification": "' + b"a" * LIMIT + b'"}', 413, "larger than"),
    ("deep arrays", b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), 400, "deeper"),
    ("very deep", b"[" * 60_000, 400, "deeper"),
    ("deep objects", b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "deeper"),
    ("deep in a value", ('{"resources": ' + "[" * 40 + "]" * 40 + "}").encode(), 400, "deeper"),
    ("empty", b"", 400, "not valid JSON"),
    ("not json", b"service=payments", 400, "not valid JSON"),
    ("truncated", READ_JSON[:-5].encode(), 400, "not valid JSON"),
    ("unterminated string", b'{"service": "payments', 400, "not valid JSON"),
    ("escaped quotes", b'"' + b'\\"' * 32_000, 400, "not valid JSON"),
    ("trailing junk", READ_JSON.encode() + b"]]]", 400, "not valid JSON"),
    ("latin-1", '{"justification": "caf\xe9"}'.encode("latin-1"), 400, "not UTF-8"),
    ("utf-16", READ_JSON.encode("utf-16"), 400, "not UTF-8"),
    ("lone surrogate value", b'{"justification": "\\ud800"}', 400, "surrogate"),
    ("lone surrogate key", b'{"\\udfff": 1}', 400, "surrogate"),
    ("lone surrogate deep", b'{"resources": ["a", "\\udbff"]}', 400, "surrogate"),
    ("5000-digit number", b'{"duration": ' + b"9" * 5000 + b"}", 400, "not valid JSON"),
    ("array", b"[]", 400, "JSON object"),
    ("string", b'"payments"', 400, "JSON object"),
    ("null", b"null", 400, "JSON object"),
    ("wide object", json.dumps({f"k{n}": n for n in range(4000)}).encode(), 400, "unknown"),
]


@pytest.fixture()
def target(tmp_path: Path) -> Iterator[Broker]:
    made = patient_broker(tmp_path)
    yield made
    made.services.close()


def _post(broker: Broker, path: str, agent: str, data: bytes, content_type: str) -> object:
    headers = {**broker.headers(agent), "Content-Type": content_type}
    return broker.client.post(path, data=data, headers=headers)


@pytest.mark.timeout(60)  # a hang guard, not a measurement: each answer takes milliseconds
@pytest.mark.parametrize(("path", "agent"), ENDPOINTS, ids=[p for p, _ in ENDPOINTS])
def test_hostile_bodies_are_refused_clearly(target: Broker, path: str, agent: str) -> None:
    for name, body, status, phrase in HOSTILE:
        response = _post(target, path, agent, body, "application/json")
        error = assert_clean_error(response, status)
        assert phrase in error["message"], (name, error)
    assert issuer_calls(target) == 0
    assert target.services.store.count_requests("pending") == 0
    # ...and the broker still serves an honest request.
    assert target.post("/v1/credentials", READ_PAYMENTS).status_code == 200


@pytest.mark.timeout(60)  # a hang guard: the answer takes well under a second
def test_escaped_quotes_do_not_make_the_depth_scan_quadratic(tmp_path: Path) -> None:
    """Regression: a body of escaped quotes made the depth scan quadratic.

    Every escaped quote of an unterminated string restarted the scan to the end of the
    body: 64 KiB (the default limit) took about 20 s of CPU, and a deployment allowing
    1 MiB (``limits.max_body_bytes`` goes up to 10 MiB) would spend hours on one request.
    The scan is linear now: the 1 MiB body is refused at once.
    """
    big = 1024 * 1024
    broker = patient_broker(tmp_path, max_body_bytes=big)
    body = b'{"justification": "' + b'\\"' * ((big - 40) // 2)
    assert len(body) <= big
    response = _post(broker, "/v1/credentials", "payments-copilot", body, "application/json")
    assert "not valid JSON" in assert_clean_error(response, 400)["message"]
    broker.services.close()


def test_lone_surrogates_are_refused_and_lose_nothing(target: Broker) -> None:
    """Regression: a lone surrogate escape reached the store and became a 500."""
    write = {
        **READ_PAYMENTS,
        "tier": "write",
        "resources": ["arn:aws:s3:::payments-prod-invoices/x"],
    }
    for field, value in (("justification", "\\ud800"), ("service", "payments\\udc00")):
        text = json.dumps({**write, field: "PLACEHOLDER"}).replace("PLACEHOLDER", value)
        response = _post(
            target, "/v1/credentials", "payments-copilot", text.encode(), "application/json"
        )
        assert "surrogate" in assert_clean_error(response, 400)["message"]
    assert target.services.store.count_requests("pending") == 0
    # A proper pair (an emoji, escaped) is ordinary text and goes through.
    text = json.dumps({**write, "justification": "PAIR"}).replace("PAIR", "\\ud83d\\ude80 go")
    opened = _post(target, "/v1/credentials", "payments-copilot", text.encode(), "application/json")
    assert opened.status_code == 202, opened.get_json()  # type: ignore[attr-defined]
    record = target.services.approvals.get(opened.get_json()["request_id"])  # type: ignore[attr-defined]
    assert record.justification == "\U0001f680 go"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json-patch+json",
        "",
    ],
)
def test_bodies_that_are_not_json_get_415(target: Broker, content_type: str) -> None:
    for path, agent in ENDPOINTS:
        response = _post(target, path, agent, READ_JSON.encode(), content_type)
        assert_clean_error(response, 415)
    assert issuer_calls(target) == 0


def test_json_with_a_charset_parameter_is_still_json(target: Broker) -> None:
    response = _post(
        target,
        "/v1/credentials",
        "payments-copilot",
        READ_JSON.encode(),
        "application/json; charset=utf-8",
    )
    assert response.status_code == 200  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration", "1e999"),
        ("duration", "NaN"),
        ("duration", "-Infinity"),
        ("duration", "true"),
        ("duration", "0"),
        ("duration", "1.5"),
        ("region", "NaN"),
        ("resources", '"arn:aws:s3:::payments-prod-invoices/x"'),
        ("resources", '[["nested"]]'),
        ("resources", "[" + ",".join(f'"r{n}"' for n in range(101)) + "]"),
        ("resources", '["a", "a"]'),
        ("resources", '["' + "a" * 1025 + '"]'),
        ("justification", '"' + "j" * 2001 + '"'),
        ("justification", '{"text": "x"}'),
        ("tier", '["read"]'),
        ("backend", "null"),
        ("service", '"PAYMENTS"'),
        ("service", '"' + "a" * 65 + '"'),
    ],
)
def test_odd_values_name_their_field(target: Broker, field: str, value: str) -> None:
    text = json.dumps({**READ_PAYMENTS, field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value)
    response = _post(
        target, "/v1/credentials", "payments-copilot", text.encode(), "application/json"
    )
    assert assert_clean_error(response, 400).get("field") == field
    assert issuer_calls(target) == 0


def test_a_huge_duration_is_clamped_not_trusted(target: Broker) -> None:
    body = json.dumps(READ_PAYMENTS)[:-1] + ', "duration": ' + "9" * 4000 + "}"
    response = _post(
        target, "/v1/credentials", "payments-copilot", body.encode(), "application/json"
    )
    assert response.status_code == 200  # type: ignore[attr-defined]
    [call] = target.issuers["aws"].calls
    assert call.duration_seconds == 3600


def test_duplicate_keys_cannot_smuggle_a_second_service(target: Broker) -> None:
    """JSON allows a repeated key; the last one counts, and it is checked like any other."""
    text = READ_JSON[:-1] + ', "service": "ledger"}'
    response = _post(
        target, "/v1/credentials", "payments-copilot", text.encode(), "application/json"
    )
    assert_clean_error(response, 403)
    assert issuer_calls(target) == 0


def test_text_no_store_can_hold_is_bad_input_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    """Regression: on PostgreSQL a NUL escape (\\u0000) in any string of a body, even an
    unknown field's name, was a 503 "store unavailable" (PostgreSQL refuses NUL in text):
    bad input looked like an outage. It is a 400 naming the field now, on every store."""
    broker = patient_broker(tmp_path, store_url=postgres_url)
    write = {
        **READ_PAYMENTS,
        "tier": "write",
        "resources": ["arn:aws:s3:::payments-prod-invoices/x"],
    }
    cases = [
        (
            "/v1/credentials",
            "payments-copilot",
            {**write, "justification": "a\x00b"},
            "justification",
        ),
        ("/v1/credentials", "payments-copilot", {**write, "service": "pay\x00"}, "service"),
        (
            "/v1/credentials",
            "payments-copilot",
            {**write, "resources": ["x", "y\x00"]},
            "resources",
        ),
        ("/v1/credentials", "payments-copilot", {**write, "x\x00": 1}, None),
        ("/v1/revoke", ADMIN, {"agent": "agent:x", "reason": "why\x00"}, "reason"),
    ]
    for path, agent, body, field in cases:
        text = json.dumps(body)  # json.dumps writes NUL as the escape \u0000
        response = _post(broker, path, agent, text.encode(), "application/json")
        error = assert_clean_error(response, 400)
        assert "NUL" in error["message"] and error.get("field") == field, (body, error)
    surrogate = json.dumps({**write, "justification": "S"}).replace('"S"', '"\\udc00"')
    response = _post(
        broker, "/v1/credentials", "payments-copilot", surrogate.encode(), "application/json"
    )
    assert assert_clean_error(response, 400)["field"] == "justification"
    assert broker.services.store.count_requests("pending") == 0
    assert broker.post("/v1/credentials", write).status_code == 202
    assert broker.client.get("/readyz").status_code == 200  # the store was never in trouble
    broker.services.close()
