"""`broker revoke`'s own wiring: the kill switch without the rest of the broker.

What it leaves out must not change what it does: open requests are cancelled (by the
approval service, built when there is one to cancel), and every scope it can read lends
its roles to the revocation, linted or not.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from broker.guard.revocation import OpenRequests
from broker.guard.revoke_wiring import CancelWhenOpen
from broker.scopes.loader import readable_scopes
from tests.fixtures.broker import ROOT, Broker, make_broker

READ = {
    "service": "payments",
    "environment": "prod",
    "region": "us-east-1",
    "tier": "read",
    "backend": "aws",
}
WRITE = {**READ, "tier": "write", "resources": ["arn:aws:s3:::payments-prod-invoices/x"]}


class Counted:
    """Builds the broker's approval service, counting how often it was asked to."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.built = 0

    def __call__(self) -> OpenRequests:
        self.built += 1
        return self.broker.services.approvals


def test_open_requests_are_cancelled_and_the_approval_service_built_only_for_them(
    tmp_path: Path,
) -> None:
    broker = make_broker(tmp_path)
    store = broker.services.store
    first = broker.post("/v1/credentials", WRITE).json["request_id"]
    second = broker.post("/v1/credentials", WRITE).json["request_id"]
    build = Counted(broker)
    cancel = CancelWhenOpen(store, build)

    assert cancel.cancel_open("drill", "ops", agent_subject="agent:nobody") == []
    assert cancel.cancel_open("drill", "ops", service="ledger") == []
    assert build.built == 0
    [cancelled] = cancel.cancel_open("drill", "ops", request_id=first)
    assert build.built == 1
    assert store.get_request(first).status == "cancelled"  # type: ignore[union-attr]
    assert store.get_request(second).status == "pending"  # type: ignore[union-attr]
    # A request no longer open is not cancelled again, and costs no build.
    assert cancel.cancel_open("drill", "ops", request_id=first) == []
    assert cancel.cancel_open("drill", "ops", request_id="req_unknown") == []
    assert build.built == 1
    [cancelled] = cancel.cancel_open("drill", "ops", agent_subject="agent:payments-copilot")
    assert store.get_request(second).status == "cancelled"  # type: ignore[union-attr]
    assert cancel.cancel_open("drill", "ops", service="payments", environment="prod") == []
    assert build.built == 2


def test_every_readable_scope_lends_its_roles_linted_or_not(tmp_path: Path) -> None:
    """A scope failing its lint is served by no replica, but its roles are still denied (a
    needless deny at worst); a file that is not a scope at all is skipped."""
    scopes = tmp_path / "scopes"
    scopes.mkdir()
    (scopes / "ok.yaml").write_text((ROOT / "scopes" / "payments.yaml").read_text())
    (scopes / "unlinted.yaml").write_text(
        (ROOT / "scopes" / "payments.yaml")
        .read_text()
        .replace("service: payments", "service: payments2")
        .replace("s3:GetObject", "s3:NoSuchAction")
    )
    (scopes / "broken.yaml").write_text("apiVersion: broker/v1\nkind: Scope\nmetadata: [\n")
    assert sorted(s.service for s in readable_scopes(scopes)) == ["payments", "payments2"]
    assert readable_scopes(tmp_path / "missing") == []


def test_the_command_lines_kill_switch_leaves_the_server_out(tmp_path: Path) -> None:
    """No web framework, approval service, IAM action data or Alembic is imported by a
    revocation that reaches no open request: they were half of the command's start-up."""
    broker = make_broker(tmp_path)
    config = broker.write_config(tmp_path / "broker.yaml")
    probe = textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from broker.config import load_settings
        from broker.guard.revocation import RevokeTarget
        from broker.guard.revoke_wiring import build_revoker

        settings = load_settings(Path({str(config)!r}))
        revoker = build_revoker(settings)
        # No scope: the revocation reaches no AWS role (none could be denied offline).
        revoker.kill_switch.scopes = lambda: []
        report = revoker.revoke(RevokeTarget(agent="agent:ops"), "cli:test", "drill")
        revoker.close()
        print(report.frozen)
        print(sorted(m for m in ("flask", "policy_sentry", "alembic", "jinja2",
              "broker.approvals.service", "broker.scopes.lint", "broker.services")
              if m in sys.modules or any(k.startswith(m + ".") for k in sys.modules)))
        """)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    frozen, imported = done.stdout.strip().splitlines()
    assert frozen == "agent agent:ops"
    assert imported == "[]", done.stdout
