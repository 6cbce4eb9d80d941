"""Secrets come from the environment, never from the file, and never reach an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import SECRET_OVERRIDES, load_settings
from broker.errors import InvalidFileError

TOKEN = "hvs.CAESIJ-an-example-token-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broker.yaml"
    path.write_text(text)
    return path


def refused(path: Path | None, environ: dict[str, str]) -> str:
    with pytest.raises(InvalidFileError) as error:
        load_settings(path, environ=environ)
    return "\n".join(str(p) for p in error.value.problems)


def test_every_secret_comes_from_its_variable(tmp_path: Path) -> None:
    environ = {
        "BROKER_STORE_URL": "postgresql+psycopg://broker:pw@db/broker",
        "BROKER_VAULT_TOKEN": TOKEN,
        "BROKER_SLACK_BOT_TOKEN": "xoxb-bot",
        "BROKER_SLACK_SIGNING_SECRET": "signing",
        "BROKER_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
        "BROKER_OIDC_CLIENT_SECRET": "client-secret",
        "BROKER_METRICS_TOKEN": "metrics-token",
    }
    path = write(
        tmp_path, "approvals:\n  oidc: {issuer: 'https://sso.example.com', client_id: broker}\n"
    )
    s = load_settings(path, environ=environ)
    assert s.store_url == environ["BROKER_STORE_URL"]
    assert s.vault.token == TOKEN and s.metrics_token == "metrics-token"
    assert (s.slack.bot_token, s.slack.signing_secret) == ("xoxb-bot", "signing")
    assert s.slack.webhook_url == environ["BROKER_SLACK_WEBHOOK_URL"]
    assert s.approvals.oidc is not None and s.approvals.oidc.client_secret == "client-secret"


def test_variables_apply_to_the_defaults_too() -> None:
    s = load_settings(None, environ={"BROKER_VAULT_TOKEN": TOKEN, "BROKER_METRICS_TOKEN": "m"})
    assert (s.vault.token, s.metrics_token, s.source) == (TOKEN, "m", "<defaults>")
    assert load_settings(None, environ={"BROKER_VAULT_TOKEN": ""}).vault.token is None


def test_a_variable_never_turns_a_feature_on(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""), environ={"BROKER_OIDC_CLIENT_SECRET": "x"})
    assert s.approvals.oidc is None


def test_the_store_url_may_be_in_the_file_and_the_variable_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "store: {url: 'sqlite:////tmp/a.db'}\n")
    assert load_settings(path, environ={}).store_url == "sqlite:////tmp/a.db"
    chosen = load_settings(path, environ={"BROKER_STORE_URL": "sqlite:////tmp/b.db"})
    assert chosen.store_url == "sqlite:////tmp/b.db"


@pytest.mark.parametrize(
    "path", sorted(set(SECRET_OVERRIDES) - {"store.url", "approvals.oidc.client_secret"})
)
def test_a_secret_written_in_the_file_is_refused_without_echoing_it(
    tmp_path: Path, path: str
) -> None:
    *parents, key = path.split(".")
    text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents))
    text += f"{'  ' * len(parents)}{key}: {TOKEN}\n"
    if path == "vault.auth.secret_id":
        text += "    method: approle\n    role_id: r\n"
    found = refused(write(tmp_path, text), {})
    line = len(parents) + 1
    column = 2 * len(parents) + len(key) + 3
    variable = SECRET_OVERRIDES[path]
    assert f":{line}:{column}: {path} must not be written in the file; set {variable}" in found
    assert TOKEN not in found


def test_the_oidc_client_secret_is_no_key_of_the_file(tmp_path: Path) -> None:
    text = "approvals:\n  oidc: {issuer: 'https://sso', client_id: b, client_secret: s3cr3t}\n"
    found = refused(write(tmp_path, text), {"BROKER_OIDC_CLIENT_SECRET": "x"})
    assert "approvals.oidc.client_secret must not be written in the file" in found
    assert "s3cr3t" not in found


def test_a_bad_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "mysql://broker:hunter2@db/broker"
    found = refused(write(tmp_path, ""), {"BROKER_STORE_URL": secret})
    assert "store.url must be a sqlite:/// or postgresql+psycopg:// URL" in found
    assert "hunter2" not in found
    webhook = "hooks.slack.com/services/T/B/s3cr3t"
    found = refused(write(tmp_path, ""), {"BROKER_SLACK_WEBHOOK_URL": webhook})
    assert "slack.webhook_url must be an http(s) URL" in found and "s3cr3t" not in found


@pytest.mark.parametrize(
    ("text", "environ", "problem"),
    [
        ("", {"BROKER_SLACK_BOT_TOKEN": "xoxb"}, "slack.signing_secret is not"),
        (
            "vault:\n  auth: {method: approle, role_id: r}\n",
            {},
            "2:18: vault.auth.method is approle: set BROKER_VAULT_SECRET_ID",
        ),
        (
            "vault:\n  auth: {method: kubernetes, role: r}\n",
            {"BROKER_VAULT_TOKEN": TOKEN},
            "BROKER_VAULT_TOKEN is set but vault.auth.method is kubernetes",
        ),
        (
            "approvals:\n  oidc: {issuer: 'https://sso.example.com', client_id: b}\n",
            {},
            "2:9: approvals.oidc has no client secret: set BROKER_OIDC_CLIENT_SECRET",
        ),
    ],
)
def test_what_the_environment_leaves_missing_fails_closed(
    tmp_path: Path, text: str, environ: dict[str, str], problem: str
) -> None:
    found = refused(write(tmp_path, text), environ)
    assert problem in found, found
    assert TOKEN not in found
