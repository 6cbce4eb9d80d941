"""Audit details are stored as JSON returns them, whichever way they are made plain."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
from typing import Any

import pytest

from broker.audit.recorder import plain_json


class Color(enum.StrEnum):
    RED = "red"


def round_trip(details: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(json.dumps(details, sort_keys=True, default=str))
    return decoded


@pytest.mark.parametrize(
    "details",
    [
        {"b": 1, "a": "x", "c": None, "d": True, "e": 1.5},
        {"resources": ("arn:aws:s3:::a", "arn:aws:s3:::b"), "nested": {"z": [1, (2, 3)], "y": {}}},
        {"when": dt.datetime(2026, 12, 5, 8, 0, tzinfo=dt.UTC), "n": 1},
        {"color": Color.RED},
        {"numbers": {1: "one", 2: "two"}},
        {"inf": math.inf, "neg": -0.0},
        {"set": {"only"}},
    ],
)
def test_details_are_what_json_gives_back_keys_in_order(details: dict[str, Any]) -> None:
    plain = plain_json(details)

    assert plain == round_trip(details)
    assert json.dumps(plain) == json.dumps(round_trip(details))  # same types, same key order
    assert all(type(v) is not Color for v in plain.values())
