"""The floor of the issuance benchmark: an HTTP service on the broker's stack that only
forwards.

Flask under gunicorn (the broker's worker class and thread count), one route that makes the
upstream call of `bench.upstream_calls` and answers its result as JSON: no token, no scope,
no guardrail, no record. What it adds to the direct call is what any service on this stack
pays for the extra HTTP hop; what the broker adds on top of it is the broker's own work.

Configured by environment variables (set by `bench.stack`): BENCH_VAULT_URL,
BENCH_VAULT_TOKEN, BENCH_MOTO_URL, BENCH_ROLE_ARN, BENCH_SESSION_POLICY, BENCH_DATABASE_GRANT
(the read grant's database role, JSON), and the AWS keys.
"""

from __future__ import annotations

import json
import os

import boto3
from flask import Flask, Response, abort, jsonify

from bench.upstream_calls import upstream_calls
from broker.issuers.vault_common import make_client


def create_app() -> Flask:
    vault = make_client(os.environ["BENCH_VAULT_URL"], os.environ["BENCH_VAULT_TOKEN"])
    sts = boto3.client("sts", endpoint_url=os.environ["BENCH_MOTO_URL"], region_name="us-east-1")
    calls = upstream_calls(
        vault,
        sts,
        os.environ["BENCH_ROLE_ARN"],
        os.environ["BENCH_SESSION_POLICY"],
        json.loads(os.environ["BENCH_DATABASE_GRANT"]),
    )
    app = Flask(__name__)

    @app.post("/<backend>/<int:i>")
    def forward(backend: str, i: int) -> Response:
        if backend not in calls:
            abort(404)
        return jsonify(credentials=calls[backend](i))

    return app
