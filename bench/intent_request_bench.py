"""What an intent adds to the agent's request: POST /v1/credentials opening a write request.

Four arms, interleaved in every round so they see the same machine state, through the
broker's WSGI app in this process (SQLite store in a temporary directory, no notifier, no
upstream: opening a request issues nothing), so what is measured is the broker's own work:

- resources: a write request naming one S3 object (the baseline);
- operations: the same object as a hand-written intent of one operation;
- plan: ``terraform show -json`` of a plan updating that object (the shape Terraform 1.9
  prints, about 5 KB);
- large state: the same change in a plan listing 1,000 unchanged objects of the state
  (about 1.6 MB, what an untrimmed plan of a large state looks like).

Reported: median and 90th percentile per arm, and each median's ratio to the baseline.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from bench.intent_bench import plan_of
from broker.app import create_app
from broker.config import Approver, Settings
from broker.identity.mint import mint_agent_token
from broker.services import build_services

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 60
WARMUP = 5
BUCKET = "acme-prod-deploy-artifacts"
SCOPE = f"""\
apiVersion: broker/v1
kind: Scope
metadata: {{service: acme, description: intent request benchmark}}
requesters: [{{subject: "agent:bench"}}]
environments:
  prod:
    aws:
      account: "111111111111"
      regions: [us-east-1]
      roles:
        read: arn:aws:iam::${{account}}:role/acme-read
        write: arn:aws:iam::${{account}}:role/acme-write
tiers:
  read:
    ttl: 1h
    aws:
      - actions: [s3:GetObject, s3:GetObjectTagging]
        resources: ["arn:aws:s3:::{BUCKET}/*"]
  write:
    ttl: 30m
    aws:
      - actions: [s3:PutObject, s3:PutObjectTagging]
        resources: ["arn:aws:s3:::{BUCKET}/*"]
    approval: {{approvers: [alice], required: 1}}
"""


def bodies() -> dict[str, dict[str, Any]]:
    base: dict[str, Any] = {
        "service": "acme",
        "environment": "prod",
        "region": "us-east-1",
        "tier": "write",
        "backend": "aws",
        "justification": "upload the new build",
    }
    resource = f"arn:aws:s3:::{BUCKET}/build/0.zip"
    operations = [{"action": "s3:PutObject", "resource": resource}]
    return {
        "resources": {**base, "resources": [resource]},
        "operations": {**base, "intent": {"operations": operations}},
        "plan": {**base, "intent": {"terraform_plan": plan_of(1)}},
        "large state": {**base, "intent": {"terraform_plan": plan_of(1000, 1)}},
    }


def main() -> None:
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="bench-intent-") as directory:
        root = Path(directory)
        (root / "scopes").mkdir()
        (root / "scopes" / "acme.yaml").write_text(SCOPE)
        settings = Settings(scopes_dir=root / "scopes", state_dir=root / "state")
        settings = replace(settings, approvers={"alice": Approver(name="alice")})
        services = build_services(settings)
        app = create_app(services=services)
        client: FlaskClient = app.test_client()
        token = mint_agent_token(services.keys, settings.identity.local, "bench", 3600)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        encoded = {name: json.dumps(body).encode() for name, body in bodies().items()}
        times: dict[str, list[float]] = {name: [] for name in encoded}
        for round_ in range(WARMUP + ROUNDS):
            for name, data in encoded.items():
                started = time.perf_counter()
                response = client.post("/v1/credentials", data=data, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 202, (name, response.get_json())
                if round_ >= WARMUP:
                    times[name].append(elapsed)
        services.close()
    baseline = statistics.median(times["resources"])
    print(f"{'request':<14} {'body':>9} {'p50':>9} {'p90':>9} {'p50 / resources':>16}")
    for name, values in times.items():
        p50 = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        size = len(encoded[name])
        print(
            f"{name:<14} {size / 1000:>7.1f} kB {p50:>6.1f} ms {p90:>6.1f} ms "
            f"{p50 / baseline:>15.2f}x"
        )
    plan, large = statistics.median(times["plan"]), statistics.median(times["large state"])
    print(
        f"intent request: opening with a plan takes {plan:.1f} ms against {baseline:.1f} ms "
        f"with named resources ({plan / baseline:.2f}x); a 1,000-resource state's plan "
        f"{large:.0f} ms ({large / baseline:.1f}x)"
    )


if __name__ == "__main__":
    main()
