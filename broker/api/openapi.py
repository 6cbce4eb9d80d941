"""GET /v1/openapi.json: the API description, from broker/openapi.yaml."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

blueprint = Blueprint("openapi", __name__)
SPEC = Path(__file__).resolve().parents[1] / "openapi.yaml"


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return document


@blueprint.get("/v1/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document of this API. 200."""
    return jsonify(spec())
