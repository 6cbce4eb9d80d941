"""`broker scopes validate` and `broker scopes plan`, run as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cli import CliResult, run_cli
from tests.scopes.factory import scope_data, write_scope

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, *args)


def test_validate_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["scopes", "validate", str(ROOT / "scopes")], capsys)
    assert code == 0
    assert out == "OK: 3 scope(s) in 3 file(s).\n"


def test_validate_prints_every_problem_as_file_line_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = scope_data()
    data["tiers"]["read"]["aws"][0]["actions"] = ["s3:DeleteObject"]
    data["tiers"]["write"]["aws"][0]["actions"] = ["s3:Put*"]
    path = write_scope(tmp_path, data)
    code, out, err = run(["scopes", "validate", str(tmp_path)], capsys)
    assert code == 1
    lines = out.splitlines()
    # read access level and destructive in read; wildcard in write, and s3:Put* reaches
    # s3:PutBucketVersioning, which is destructive, and s3:PutBucketPolicy, which changes
    # permissions (an escalation path).
    assert len(lines) == 5
    for line in lines:
        file, line_no, column, reason = line.split(":", 3)
        assert file == str(path) and line_no.isdigit() and column.isdigit() and reason
    assert "5 problem(s) in 1 file(s)" in err


def test_validate_with_config_checks_approvers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(
        "approvers:\n  alice: {email: alice@example.com}\n  bob: {}\ngroups:\n  sre: [alice, bob]\n"
    )
    scopes = tmp_path / "scopes"
    scopes.mkdir()
    write_scope(scopes, scope_data())
    assert run(["scopes", "validate", str(scopes), "--config", str(config)], capsys)[0] == 0
    config.write_text("approvers:\n  bob: {}\ngroups:\n  sre: [bob]\n")
    code, out, _ = run(["scopes", "validate", str(scopes), "--config", str(config)], capsys)
    assert code == 1 and "approver 'alice' is not defined in the broker config" in out


def test_plan_in_human_terms(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["scopes", "plan", str(ROOT / "scopes")], capsys)
    assert code == 0
    assert "payments  (" in out
    assert "delete  ttl 15m, 2 distinct approvals from group sre-oncall, then a 10m delay" in out
    assert "        s3:DeleteObject on arn:aws:s3:::payments-prod-invoices/*" in out
    assert (
        "      Write:\n        cloudformation:DeleteChangeSet, cloudformation:DeleteStack on" in out
    )


def test_plan_json_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    first = run(["scopes", "plan", str(ROOT / "scopes"), "--json"], capsys)[1]
    second = run(["scopes", "plan", str(ROOT / "scopes"), "--json"], capsys)[1]
    assert first == second
    documents = json.loads(first)
    assert set(documents) == {"deploy", "ledger", "payments"}
    assert documents["payments"]["prod"]["read"]["aws"]["role_arn"] == (
        "arn:aws:iam::111111111111:role/broker/payments-prod-read"
    )


def test_plan_refuses_invalid_scopes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_scope(tmp_path, "nonsense: [")
    code, _, err = run(["scopes", "plan", str(tmp_path)], capsys)
    assert code == 1 and "Refusing to plan" in err


def test_plan_against_a_directory_shows_added_grants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    write_scope(old, scope_data())
    data = scope_data()
    data["tiers"]["write"]["aws"][0]["actions"].append("s3:PutObjectTagging")
    data["tiers"]["write"]["ttl"] = "1h"
    write_scope(new, data)
    code, out, _ = run(["scopes", "plan", str(new), "--against", str(old)], capsys)
    assert code == 0
    assert (
        "+ shop/prod/write: adds s3:PutObjectTagging on arn:aws:s3:::shop-prod-data/* "
        "in eu-west-1, us-east-1"
    ) in out
    assert "~ shop/prod/write: changes ttl from 30m to 1h" in out
    assert "Plan: 4 grants added, 0 removed, 2 settings changed." in out


def test_plan_against_itself_has_no_changes(capsys: pytest.CaptureFixture[str]) -> None:
    scopes = str(ROOT / "scopes")
    code, out, _ = run(["scopes", "plan", scopes, "--against", scopes], capsys)
    assert code == 0 and out.startswith("No changes")


def test_plan_against_a_git_ref(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    (repo / "scopes").mkdir(parents=True)
    git = shutil.which("git")
    assert git is not None

    def commit(message: str) -> None:
        for args in (
            ["add", "-A"],
            ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
        ):
            subprocess.run([git, "-C", str(repo), *args], check=True)

    subprocess.run([git, "init", "-q", str(repo)], check=True)
    write_scope(repo / "scopes", scope_data())
    commit("first")
    data = scope_data()
    data["tiers"]["delete"]["aws"][0]["actions"].append("s3:DeleteBucket")
    data["tiers"]["delete"]["aws"][0]["resources"].append("arn:aws:s3:::shop-${env}-data")
    write_scope(repo / "scopes", data)
    code, out, err = run(["scopes", "plan", str(repo / "scopes"), "--against", "HEAD"], capsys)
    assert code == 0, err
    assert (
        "+ shop/staging/delete: adds s3:DeleteBucket on arn:aws:s3:::shop-staging-data in us-east-1"
        in out
    )
    assert "removes" not in out
    code, _, err = run(["scopes", "plan", str(repo / "scopes"), "--against", "no-such-ref"], capsys)
    assert code == 1 and "cannot read 'scopes' at git ref 'no-such-ref'" in err

    # A scope file that is new since the ref: everything it grants is added.
    other = scope_data()
    other["metadata"]["service"] = "orders"
    (repo / "scopes" / "new").mkdir()
    new_file = write_scope(repo / "scopes" / "new", other, "orders.yaml")
    code, out, err = run(["scopes", "plan", str(new_file), "--against", "HEAD"], capsys)
    assert code == 0, err
    assert "+ orders/prod/read: adds s3:GetObject" in out and "removes" not in out
    code, out, err = run(["scopes", "plan", str(new_file.parent), "--against", "HEAD"], capsys)
    assert code == 0, err
    assert "+ orders/prod/read: adds s3:GetObject" in out


def test_plan_against_reports_loosened_settings_and_requesters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    before = scope_data()
    before["tiers"]["write"]["rate_limit"] = "10/h"
    write_scope(old, before)
    after = scope_data(requesters=[{"subject": "agent:shop"}, {"subject": "agent:intruder"}])
    after["tiers"]["delete"]["approval"]["allow_slack_approval"] = True
    write_scope(new, after)
    code, out, _ = run(["scopes", "plan", str(new), "--against", str(old)], capsys)
    assert code == 0
    assert "+ shop/(all)/(all): adds requester subject agent:intruder" in out
    assert "~ shop/prod/write: changes rate_limit from 10/h to none" in out
    assert "~ shop/prod/delete: changes slack_approval from off to on" in out


def test_plan_shows_and_compares_the_intent_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    before = scope_data()
    before["tiers"]["write"]["intent"] = "required"
    before["tiers"]["delete"].update(intent="required", max_destructive=5)
    write_scope(old, before)
    after = scope_data()
    after["tiers"]["delete"].update(intent="required", max_destructive=50)
    write_scope(new, after)
    code, out, _ = run(["scopes", "plan", str(old)], capsys)
    assert code == 0
    assert "an intent is required" in out
    assert "at most 5 destructive operation(s) per intent" in out
    code, out, _ = run(["scopes", "plan", str(new), "--against", str(old)], capsys)
    assert code == 0
    assert "~ shop/prod/write: changes intent from required to optional" in out
    assert "~ shop/prod/delete: changes max_destructive from 5 to 50" in out
