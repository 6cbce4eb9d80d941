"""The settings model: defaults, every problem with its position, failing closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import Settings, load_settings, require_valid
from broker.errors import ConfigError, InvalidFileError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broker.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    """Each problem as 'line:column: reason' (the file's name cut off)."""
    path = write(tmp_path, text)
    with pytest.raises(InvalidFileError) as refused:
        load_settings(path, environ=environ or {})
    return [str(p).removeprefix(f"{path}:") for p in refused.value.problems]


def test_an_empty_file_gives_the_defaults_beside_it(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), environ={})
    defaults = Settings()
    assert settings.scopes_dir == tmp_path / "scopes"
    assert settings.state_dir == tmp_path / ".broker"
    assert settings.source == str(tmp_path / "broker.yaml")
    for name in ("public_url", "listen", "workers", "identity", "vault", "breaker", "approvals"):
        assert getattr(settings, name) == getattr(defaults, name), name
    assert settings.vault.auth.method == "token" and settings.vault.verify_tls
    assert (settings.circuit_failures, settings.upstream_deadline_seconds) == (5, 10.0)


def test_every_setting_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
scopes_dir: /srv/scopes
state_dir: state
public_url: https://broker.example.com/
listen: 0.0.0.0:9000
workers: 4
threads: 16
store: {url: "postgresql+psycopg://broker@db/broker"}
identity:
  local: {enabled: false, issuer: me, audience: them, max_ttl: 2h}
  oidc:
    - name: gh
      issuer: https://token.actions.githubusercontent.com
      audience: broker
      jwks_url: https://token.actions.githubusercontent.com/.well-known/jwks
      algorithms: [RS256, ES256]
      subject_claim: repository
      required_claims: [ref]
  max_token_bytes: 4096
  leeway: 1m
  jwks_cache: 15m
  jwks_min_refresh: 45s
  admin_issuers: [gh]
admins: ["gh:acme/ops"]
approvers:
  alice: {name: Alice A., email: alice@example.com, slack_user_id: U024BE7LH}
  bob: {oidc_subject: "1234", notify_directly: true}
groups: {leads: [alice, bob]}
aws:
  endpoint_url: http://127.0.0.1:5000
  default_region: eu-west-1
  broker_principal_arn: arn:aws:iam::111111111111:role/broker
  admin_role_arn: arn:aws:iam::${account}:role/broker-admin
  regional_sts: false
vault: {url: "https://vault:8200", namespace: team, verify_tls: false, token_role: ""}
slack: {api_base_url: "http://127.0.0.1:9999/api/", default_channel: "#approvals"}
approvals: {link_ttl: 1h, collect_window: 5m, break_glass_ttl: 10m}
breaker: {window: 30m, max_denials: 2, max_destructive_requests: 3, max_out_of_scope: 4}
cache: {margin: 2m, margin_ratio: 0.5}
limits: {max_body_bytes: 2048, upstream_deadline: 30s, circuit_failures: 7, circuit_cooldown: 1m,
         revocation_concurrency: 4}
audit: {stream: "-"}
""",
    )
    s = load_settings(path, environ={})
    assert (s.scopes_dir, s.state_dir) == (Path("/srv/scopes"), tmp_path / "state")
    assert s.public_url == "https://broker.example.com"  # no trailing slash
    assert (s.listen, s.workers, s.threads) == ("0.0.0.0:9000", 4, 16)
    assert s.database_url == "postgresql+psycopg://broker@db/broker"
    local = s.identity.local
    assert (local.enabled, local.issuer, local.audience, local.max_ttl_seconds) == (
        False,
        "me",
        "them",
        7200,
    )
    (oidc,) = s.identity.oidc
    assert oidc.algorithms == ("RS256", "ES256") and oidc.identity_claims == ("repository",)
    assert oidc.required_claims == ("ref",)
    assert (s.identity.leeway_seconds, s.identity.jwks_cache_seconds) == (60, 900)
    assert s.identity.jwks_min_refresh_seconds == 45 and s.identity.max_token_bytes == 4096
    assert s.admins == ("gh:acme/ops",) and s.identity.admin_issuers == ("gh",)
    assert s.approvers["alice"].display_name == "Alice A."
    assert s.approvers["bob"].display_name == "bob" and s.approvers["bob"].notify_directly
    assert s.approver_by_slack_id("U024BE7LH") == s.approvers["alice"]
    assert s.approvers_for((), ("leads",)) == {"alice", "bob"}
    assert s.aws.admin_role_arn == "arn:aws:iam::${account}:role/broker-admin"
    assert not s.aws.regional_sts and s.aws.default_region == "eu-west-1"
    assert (s.vault.namespace, s.vault.verify_tls, s.vault.token_role) == ("team", False, "")
    assert s.slack.default_channel == "#approvals"
    assert (s.approvals.link_ttl_seconds, s.approvals.break_glass_ttl_seconds) == (3600, 600)
    assert s.breaker.window_seconds == 1800 and s.breaker.max_out_of_scope == 4
    assert (s.cache_margin_seconds, s.cache_margin_ratio) == (120, 0.5)
    assert (s.max_body_bytes, s.upstream_deadline_seconds) == (2048, 30.0)
    assert (s.circuit_failures, s.circuit_cooldown_seconds) == (7, 60.0)
    assert s.revocation_concurrency == 4
    assert s.audit_stream == "-"


def test_every_problem_is_reported_at_its_value(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "workers: '4'\n"
        "threads: 0\n"
        "limits:\n  upstream_deadline: 5m\n  colour: red\n"
        "approvers:\n  Alice: {email: alice}\n  bob: {notify_directly: yes please}\n"
        "cache: {margin_ratio: 1}\n",
    )
    assert found == [
        "1:10: workers must be an integer",
        "2:10: threads must be between 1 and 256, got 0",
        "4:22: limits.upstream_deadline must be 1s to 2m",
        "5:3: limits: unknown key 'colour' (expected one of: circuit_cooldown, "
        "circuit_failures, impact_deadline, max_body_bytes, max_intent_body, "
        "reconcile_interval, revocation_concurrency, upstream_deadline)",
        "7:3: approvers: name 'Alice' is invalid: lower-case letters, digits, '.', '_' or '-'",
        "7:18: approvers.Alice.email 'alice' is invalid: an email address",
        "8:26: approvers.bob.notify_directly must be true or false",
        "9:23: cache.margin_ratio must be a number from 0 to 1",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workres: 2\n", "1:1: config: unknown key 'workres' (did you mean 'workers'?)"),
        ("vault: []\n", "1:8: vault must be a mapping"),
        ("limits: 5\n", "1:9: limits must be a mapping"),
        ("workers: 2\nworkers: 3\n", "2:1: config: duplicate key 'workers'"),
        ("- a\n", "1:1: config must be a mapping"),
        ("admins: [a, a]\n", "1:13: admins: duplicate entry 'a'"),
        ("groups: {sre: []}\n", "1:15: groups.sre must not be empty"),
        (
            "groups: {sre: [nobody]}\n",
            "1:16: groups.sre[0] names 'nobody', who is not in approvers",
        ),
        (
            "identity: {oidc: [{name: x}]}\n",
            "1:19: identity.oidc[0]: missing required key 'issuer'",
        ),
        ("aws: {regional_sts: 1}\n", "1:21: aws.regional_sts must be true or false"),
        ("approvals: {link_ttl: soon}\n", "1:23: approvals.link_ttl must be a duration such as"),
        ("vault: {auth: {method: ldap}}\n", "1:24: vault.auth.method 'ldap' is invalid: one of"),
        ("listen: ':80'\n", "1:9: listen ':80' is invalid: host:port"),
        ("scopes_dir: 5\n", "1:13: scopes_dir must be a path"),
    ],
)
def test_problems_name_the_setting_and_its_place(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    "setting",
    [
        "public_url: ftp://broker.example.com",
        "public_url: https://",
        "public_url: broker.example.com",
        "vault: {url: 'vault:8200'}",
        "aws: {endpoint_url: 'http//moto'}",
        "slack: {api_base_url: 'file:///etc/passwd'}",
        "identity: {oidc: [{name: x, issuer: i, audience: a, jwks_url: 'javascript:alert(1)'}]}",
    ],
)
def test_urls_are_typed(tmp_path: Path, setting: str) -> None:
    (found,) = problems(tmp_path, setting + "\n")
    assert found.endswith("must be an http(s) URL"), found


def test_public_url_needs_https_away_from_this_machine(tmp_path: Path) -> None:
    assert problems(tmp_path, "public_url: http://broker.example.com\n") == [
        "1:13: public_url must use https (approval links carry personal tokens)"
    ]
    for local in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        assert load_settings(write(tmp_path, f"public_url: '{local}'\n"), environ={})


def test_a_yaml_bomb_or_a_huge_file_is_refused(tmp_path: Path) -> None:
    assert "anchors and aliases are not allowed" in " ".join(
        problems(tmp_path, "approvers: &a {x: {}}\ngroups: *a\n")
    )
    path = tmp_path / "broker.yaml"
    path.write_text("# padding\n" * 200_000)
    with pytest.raises(InvalidFileError, match="larger than the 1024 KiB limit"):
        load_settings(path, environ={})


def test_the_broker_refuses_to_start_on_any_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 0\nthreads: many\n")
    with pytest.raises(ConfigError) as refused:
        require_valid(path)
    message = refused.value.message
    assert message.startswith("Refusing to start with invalid settings:")
    assert "workers must be between 1 and 64" in message and "threads must be an integer" in message


def test_values_the_file_cannot_set(tmp_path: Path) -> None:
    """What the broker fills in itself is not a key of the file."""
    found = problems(tmp_path, "source: elsewhere\n")
    assert found[0].startswith("1:1: config: unknown key 'source'")


OIDC_ENTRY = "{{name: {name}, issuer: '{url}', audience: broker, jwks_url: 'https://{host}/jwks'}}"


def _oidc(name: str, url: str = "https://idp.example.com") -> str:
    return OIDC_ENTRY.format(name=name, url=url, host=url.removeprefix("https://"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"identity: {{oidc: [{_oidc('local')}]}}\n", "identity.oidc[0].name 'local' is reserved"),
        (f"identity: {{oidc: [{_oidc('agent')}]}}\n", "identity.oidc[0].name 'agent' is reserved"),
        (
            f"identity: {{oidc: [{_oidc('a')}, {_oidc('a', 'https://other.example.com')}]}}\n",
            "identity.oidc[1].name 'a' names two issuers",
        ),
        (
            f"identity: {{oidc: [{_oidc('a')}, {_oidc('b')}]}}\n",
            "identity.oidc[1].issuer is another issuer's too",
        ),
        (
            f"identity: {{oidc: [{_oidc('a', 'broker-local')}]}}\n",
            "identity.oidc[0].issuer is another issuer's too",
        ),
        ("admins: [ops]\n", "'ops' names no issuer"),
        ("admins: ['gh:ops']\n", "'gh:ops' names issuer 'gh', which is not configured"),
        (
            f"identity: {{oidc: [{_oidc('gh')}]}}\nadmins: ['gh:ops']\n",
            "'gh:ops' is of issuer 'gh', which identity.admin_issuers does not allow",
        ),
        (
            "identity: {local: {enabled: false}}\nadmins: ['agent:ops']\n",
            "'agent:ops' is of the broker's own issuer, which is disabled",
        ),
        ("identity: {admin_issuers: [gh]}\n", "identity.admin_issuers[0] names no configured"),
    ],
)
def test_identities_name_their_issuer(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found


def test_admins_are_issuer_and_subject(tmp_path: Path) -> None:
    """An admin entry is one issuer's subject: the same subject elsewhere is not an admin."""
    from broker.identity.model import AgentIdentity

    text = f"identity: {{oidc: [{_oidc('gh')}], admin_issuers: [local, gh]}}\n"
    settings = load_settings(
        write(tmp_path, text + "admins: ['agent:ops', 'gh:repo:acme/x']\n"), {}
    )
    assert settings.is_admin(AgentIdentity("local", "agent:ops"))
    assert settings.is_admin(AgentIdentity("gh", "repo:acme/x"))
    assert not settings.is_admin(AgentIdentity("gh", "agent:ops"))
    assert not settings.is_admin(AgentIdentity("local", "repo:acme/x"))
    only_local = load_settings(
        write(tmp_path, f"identity: {{oidc: [{_oidc('gh')}]}}\nadmins: ['agent:ops']\n"), {}
    )
    assert only_local.identity.admin_issuers == ("local",)


def test_one_person_is_one_approver(tmp_path: Path) -> None:
    """Two approvers with the same email, Slack user or OIDC subject are one person twice:
    the two-person rule would count them twice, and a Slack click would always be the first."""
    text = (
        "approvers:\n"
        "  alice: {email: alice@example.com, slack_user_id: U111, oidc_subject: s-1}\n"
        "  bob: {email: Alice@Example.com, slack_user_id: U111, oidc_subject: s-1}\n"
        "  carol: {email: carol@example.com, slack_user_id: U333, oidc_subject: s-3}\n"
    )
    found = problems(tmp_path, text)
    assert len(found) == 3, found
    for attribute in ("email", "slack_user_id", "oidc_subject"):
        assert any(
            f"approvers.bob.{attribute}" in p and "also alice's: one person is one approver" in p
            for p in found
        ), found
