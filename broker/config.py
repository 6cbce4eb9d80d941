"""The broker's settings: one YAML file, secrets from the environment, validated, fail closed.

Each setting is declared once, below: its YAML key, type, bounds and default (see
:mod:`broker.schema`); adding one is adding a line. ``load_settings`` reports every
problem as ``file:line:column: reason`` (the same format as scope validation) and the
broker refuses to start on any of them. Secrets (the Vault token, Slack tokens, the store
URL's password) come from environment variables so the file can be committed; a secret
written in the file is refused, and a secret is never echoed in an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, PlainValidator, TypeAdapter
from pydantic_core import InitErrorDetails

from broker.approver_identities import shared_identities
from broker.audit.anchor_settings import AnchorSettings
from broker.errors import ConfigError, InvalidFileError, Problem
from broker.guard.fanout import DEFAULT_CONCURRENCY
from broker.identity.fetch import secure_url
from broker.identity.model import LOCAL_ISSUER, AgentIdentity, parse_principal
from broker.identity.settings import ALGORITHMS as ALGORITHMS
from broker.identity.settings import IdentitySettings as IdentitySettings
from broker.identity.settings import LocalIssuer as LocalIssuer
from broker.identity.settings import Name
from broker.identity.settings import OidcIssuer as OidcIssuer
from broker.schema import (
    KEY,
    NOT_IN_FILE,
    Declared,
    Duration,
    Entries,
    FilePath,
    Flag,
    HttpUrl,
    Integer,
    Keyed,
    Labels,
    Seconds,
    Text,
    alias,
    problem,
    refuse,
    section,
    validate,
)
from broker.yamldoc import Document, DocumentError, read_document

ENV_PREFIX = "BROKER_"
# Environment variables that set a setting (its dotted path in the file -> the variable).
# All but store.url are secrets: the file must not hold them.
SECRET_OVERRIDES = {
    "store.url": "BROKER_STORE_URL",
    "vault.token": "BROKER_VAULT_TOKEN",
    "vault.auth.secret_id": "BROKER_VAULT_SECRET_ID",
    "slack.bot_token": "BROKER_SLACK_BOT_TOKEN",
    "slack.signing_secret": "BROKER_SLACK_SIGNING_SECRET",
    "slack.webhook_url": "BROKER_SLACK_WEBHOOK_URL",
    "approvals.oidc.client_secret": "BROKER_OIDC_CLIENT_SECRET",
    "metrics.token": "BROKER_METRICS_TOKEN",
}
WRITABLE_IN_FILE = {"store.url"}
# Blocks whose presence turns a feature on: a variable alone never creates them.
OPTIONAL_BLOCKS = {"approvals.oidc"}

SLACK_USER = "[UW][A-Z0-9]{2,20}"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

Arn = Text(r"arn:aws[\w-]*:(iam|sts)::\d{12}:[\w+=,.@/-]+", "an IAM ARN")
RoleArnTemplate = Text(
    r"arn:aws[\w-]*:iam::(\d{12}|\$\{account\}):role/[\w+=,.@/-]+",
    "a role ARN, ${account} allowed",
)
VaultName = Text(r"[\w.@-]{1,128}")


@dataclass(frozen=True)
class Approver(Declared):
    name: Annotated[str, alias(KEY)]
    display_name: Annotated[str, alias("name"), Text()] = ""
    email: Annotated[str | None, Text(r"[^@\s]+@[^@\s]+", "an email address")] = None
    slack_user_id: Annotated[str | None, Text(SLACK_USER, "a Slack user id such as U024BE7LH")] = (
        None
    )
    oidc_subject: Annotated[str | None, Text()] = None
    notify_directly: Annotated[bool, Flag] = False

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        data.setdefault("name", data.get(KEY))  # shown as its key unless named
        return iter(())


@dataclass(frozen=True)
class AwsSettings(Declared):
    """How the broker reaches AWS with its own identity (the standard boto3 chain)."""

    endpoint_url: Annotated[str | None, HttpUrl] = None  # e.g. a moto server in development
    default_region: Annotated[str, Text()] = "us-east-1"
    broker_principal_arn: Annotated[str | None, Arn] = None  # whom tier roles trust
    # A role the broker assumes in each account to manage tier roles (apply, kill switch);
    # ${account} is replaced. Unset: the broker's own credentials, in its own account only.
    admin_role_arn: Annotated[str | None, RoleArnTemplate] = None
    regional_sts: Annotated[bool, Flag] = True


VaultAuthMethod = Literal["token", "approle", "kubernetes", "jwt"]
VAULT_AUTH_METHODS: tuple[VaultAuthMethod, ...] = ("token", "approle", "kubernetes", "jwt")
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
# What each login method needs, and what it would ignore (refused rather than ignored).
_AUTH_NEEDS = {"approle": ("role_id",), "kubernetes": ("role",), "jwt": ("role",)}
_AUTH_UNUSED = {
    "token": ("mount", "role", "role_id", "jwt_path"),
    "approle": ("role", "jwt_path"),
    "kubernetes": ("role_id",),
    "jwt": ("role_id",),
}


@dataclass(frozen=True)
class VaultAuthSettings(Declared):
    """How the broker proves itself to Vault: the token in BROKER_VAULT_TOKEN ("token"), or
    a login it repeats before its token runs out (AppRole, Kubernetes, JWT)."""

    method: VaultAuthMethod = "token"
    mount: Annotated[str | None, Text(r"[\w.-]+(/[\w.-]+)*")] = None  # default: the method
    role: Annotated[str | None, VaultName] = None  # kubernetes, jwt: the Vault role
    role_id: Annotated[str | None, VaultName] = None  # approle
    secret_id: Annotated[str | None, Text()] = None  # approle: BROKER_VAULT_SECRET_ID only
    # kubernetes, jwt: the token to log in with, read again at every login
    jwt_path: Annotated[Path, FilePath] = SERVICE_ACCOUNT_TOKEN

    @property
    def mount_point(self) -> str:
        return self.mount or self.method

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        method = data.get("method", "token")
        for key in _AUTH_NEEDS.get(method, ()):
            if key not in data:
                yield problem(f": method {method} needs '{key}'")
        for key in _AUTH_UNUSED.get(method, ()):
            if key in data:
                yield problem(f"does not apply to method {method}", key)

    def problems(self) -> Iterator[InitErrorDetails]:
        if self.method == "approle" and not self.secret_id:
            yield problem(
                "is approle: set BROKER_VAULT_SECRET_ID to the AppRole's secret id", "method"
            )


@dataclass(frozen=True)
class VaultSettings(Declared):
    url: Annotated[str | None, HttpUrl] = None
    token: Annotated[str | None, Text()] = None  # BROKER_VAULT_TOKEN only
    auth: VaultAuthSettings = field(default_factory=VaultAuthSettings)
    # The address agents use, when it differs from url.
    public_url: Annotated[str | None, HttpUrl] = None
    # Agent tokens are created through this token role (orphan, only broker-* policies), so
    # the broker's own token needs no sudo. Empty: create-orphan, which needs sudo.
    token_role: Annotated[str, Text(r"[A-Za-z0-9_-]{0,64}", "a role name")] = "broker-tier"
    namespace: Annotated[str | None, Text()] = None
    verify_tls: Annotated[bool, Flag] = True

    def problems(self) -> Iterator[InitErrorDetails]:
        if self.auth.method != "token" and self.token:
            yield problem(
                f"BROKER_VAULT_TOKEN is set but vault.auth.method is {self.auth.method}: "
                "the broker logs in by itself; unset one of them",
                sentence=True,
            )


@dataclass(frozen=True)
class SlackSettings(Declared):
    bot_token: Annotated[str | None, Text()] = None
    signing_secret: Annotated[str | None, Text()] = None
    webhook_url: Annotated[str | None, HttpUrl] = None
    api_base_url: Annotated[str, HttpUrl] = "https://slack.com/api/"
    default_channel: Annotated[str | None, Text()] = None

    def problems(self) -> Iterator[InitErrorDetails]:
        if self.bot_token and not self.signing_secret:
            yield problem(
                "slack.bot_token is set but slack.signing_secret is not: button clicks could "
                "not be verified (set BROKER_SLACK_SIGNING_SECRET)",
                sentence=True,
            )


@dataclass(frozen=True)
class OidcSignIn(Declared):
    """Optional approver sign-in through an OIDC provider (instead of personal links)."""

    issuer: Annotated[str, HttpUrl]
    client_id: Annotated[str, Text()]
    client_secret: Annotated[str | None, Text()] = None
    # email (with email_verified: true), or an id the user cannot edit: sub, or Entra's oid.
    approver_claim: Annotated[
        str,
        Text(
            "email|sub|oid",
            "email (verified by the provider), sub or oid: a claim users cannot edit",
        ),
    ] = "email"
    # A signed-in approver's browser session ends after this long without a request, and
    # after session_max in any case.
    session_idle_seconds: Annotated[int, alias("session_idle"), Seconds] = 30 * 60
    session_max_seconds: Annotated[int, alias("session_max"), Seconds] = 8 * 3600

    def problems(self) -> Iterator[InitErrorDetails]:
        reason = oidc_sign_in_problem(self)
        if reason:
            yield problem(reason, sentence=True)


def oidc_sign_in_problem(oidc: OidcSignIn) -> str | None:
    """Why approver sign-in cannot start with these settings, or None."""
    if not oidc.client_secret:
        return "approvals.oidc has no client secret: set BROKER_OIDC_CLIENT_SECRET"
    if not secure_url(oidc.issuer):
        return "approvals.oidc.issuer must use https (it vouches for approvers)"
    return None


@dataclass(frozen=True)
class ApprovalSettings(Declared):
    link_ttl_seconds: Annotated[int, alias("link_ttl"), Seconds] = 24 * 3600
    collect_window_seconds: Annotated[int, alias("collect_window"), Seconds] = 15 * 60
    # Break-glass credentials live the lesser of this and the tier's TTL.
    break_glass_ttl_seconds: Annotated[int, alias("break_glass_ttl"), Duration(60, 3600)] = 15 * 60
    # The least delay a delete tier may declare between its last approval and collection.
    min_delete_delay_seconds: Annotated[int, alias("min_delete_delay"), Duration(1, 86400)] = 60
    oidc: OidcSignIn | None = None


@dataclass(frozen=True)
class BreakerSettings(Declared):
    """Automatic freeze of an agent showing the patterns that precede outages."""

    window_seconds: Annotated[int, alias("window"), Seconds] = 3600
    max_denials: Annotated[int, Integer(1)] = 5
    max_destructive_requests: Annotated[int, Integer(1)] = 5
    max_out_of_scope: Annotated[int, Integer(1)] = 3


def _store_url(value: str | None) -> str | None:
    if value and not value.startswith(("sqlite:", "postgresql")):
        raise refuse(problem("must be a sqlite:/// or postgresql+psycopg:// URL"))
    return value


def _ratio(value: object) -> float:
    if not isinstance(value, float | int) or isinstance(value, bool) or not 0 <= value < 1:
        raise refuse(problem("must be a number from 0 to 1"))
    return float(value)


Ratio = PlainValidator(_ratio)


@dataclass(frozen=True)
class Settings(Declared):
    scopes_dir: Annotated[Path, FilePath, alias("scopes_dir", validate_default=True)] = Path(
        "scopes"
    )
    state_dir: Annotated[Path, FilePath, alias("state_dir", validate_default=True)] = Path(
        ".broker"
    )
    public_url: Annotated[str, HttpUrl, AfterValidator(lambda url: url.rstrip("/"))] = (
        "http://127.0.0.1:8080"
    )
    listen: Annotated[str, Text(r"[\w.:\[\]-]+:\d{1,5}", "host:port")] = "127.0.0.1:8080"
    workers: Annotated[int, Integer(1, 64)] = 2
    threads: Annotated[int, Integer(1, 256)] = 8
    # Default: a SQLite file in state_dir.
    store_url: Annotated[
        str | None, Text(), AfterValidator(_store_url), section("store", "url")
    ] = None
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    admins: Annotated[tuple[str, ...], Entries(allow_empty=True)] = ()
    approvers: Annotated[Mapping[Annotated[str, Name], Approver], Keyed] = field(
        default_factory=dict
    )
    groups: Mapping[str, Annotated[tuple[str, ...], Entries()]] = field(default_factory=dict)
    aws: AwsSettings = field(default_factory=AwsSettings)
    vault: VaultSettings = field(default_factory=VaultSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    cache_margin_seconds: Annotated[int, Seconds, section("cache", "margin")] = 300
    cache_margin_ratio: Annotated[float, Ratio, section("cache", "margin_ratio")] = 0.2
    max_body_bytes: Annotated[
        int, Integer(1024, 10 * 1024 * 1024), section("limits", "max_body_bytes")
    ] = 64 * 1024
    # How long measuring an intent's impact for approvers may take (docs/intents.md).
    impact_deadline_seconds: Annotated[
        float, Duration(1, 30), section("limits", "impact_deadline")
    ] = 3.0
    # A request carrying an intent (a Terraform plan, a change set) may be this large.
    max_intent_body_bytes: Annotated[
        int, Integer(64 * 1024, 64 * 1024 * 1024), section("limits", "max_intent_body")
    ] = 10 * 1024 * 1024
    upstream_deadline_seconds: Annotated[
        float, Duration(1, 120), section("limits", "upstream_deadline")
    ] = 10.0
    # Each upstream's circuit (per worker): open after this many failed calls in a row, for
    # this long, then one trial call.
    circuit_failures: Annotated[int, Integer(1, 100), section("limits", "circuit_failures")] = 5
    circuit_cooldown_seconds: Annotated[
        float, Duration(1, 600), section("limits", "circuit_cooldown")
    ] = 10.0
    # Upstream revocations the kill switch has in flight at once (Vault tokens, leases).
    revocation_concurrency: Annotated[
        int, Integer(1, 128), section("limits", "revocation_concurrency")
    ] = DEFAULT_CONCURRENCY
    # How often each replica's reconciler looks for credentials minted without a record and
    # for request documents (Vault policies, database roles) whose credential ended.
    reconcile_interval_seconds: Annotated[
        float, Duration(1, 3600), section("limits", "reconcile_interval")
    ] = 60.0
    audit_stream: Annotated[str | None, Text(), section("audit", "stream")] = None  # "-": stdout
    # Without Slack, alerts of every process (server and CLI) are also appended here.
    alert_log: Annotated[Path | None, FilePath, section("alerts", "log")] = None
    # Where the chain's head is anchored (S3 with Object Lock); none: no anchor.
    audit_anchor: Annotated[AnchorSettings | None, section("audit", "anchor")] = None
    # A bearer token GET /metrics requires (BROKER_METRICS_TOKEN only); none: open.
    metrics_token: Annotated[str | None, Text(), section("metrics", "token")] = None
    source: Annotated[str, alias(NOT_IN_FILE)] = "<defaults>"

    @property
    def impact_report_seconds(self) -> float:
        """By when a measurement must have reported: minting the read credential (bounded
        by the upstream deadline), measuring, and a margin."""
        return self.upstream_deadline_seconds + self.impact_deadline_seconds + 5

    @property
    def database_url(self) -> str:
        return self.store_url or f"sqlite:///{(self.state_dir / 'broker.db').resolve()}"

    # The lint's ApproverDirectory protocol: scopes name approvers and groups from here.
    def has_approver(self, name: str) -> bool:
        return name in self.approvers

    def has_group(self, name: str) -> bool:
        return name in self.groups

    def approvers_for(self, names: tuple[str, ...], groups: tuple[str, ...]) -> set[str]:
        """The approver names a scope's approval rule admits, groups expanded."""
        result = {n for n in names if n in self.approvers}
        for group in groups:
            result.update(m for m in self.groups.get(group, ()) if m in self.approvers)
        return result

    def approver_by_slack_id(self, slack_user_id: str) -> Approver | None:
        for approver in self.approvers.values():
            if approver.slack_user_id == slack_user_id:
                return approver
        return None

    def has_issuer(self, name: str) -> bool:
        return name in self.identity.issuer_names

    def is_admin(self, identity: AgentIdentity) -> bool:
        """Listed in ``admins`` (issuer and subject), from an issuer allowed to be admin."""
        return identity.issuer in self.identity.admin_issuers and identity.principal in self.admins

    def problems(self) -> Iterator[InitErrorDetails]:
        yield from self._admin_problems()
        yield from shared_identities(self.approvers)
        for group, members in self.groups.items():
            for index, member in enumerate(members):
                if member not in self.approvers:
                    yield problem(
                        f"names '{member}', who is not in approvers", "groups", group, index
                    )
        url = urlsplit(self.public_url)
        if url.scheme == "http" and url.hostname not in LOOPBACK:
            yield problem("must use https (approval links carry personal tokens)", "public_url")

    def _admin_problems(self) -> Iterator[InitErrorDetails]:
        """Each admin names its issuer (agent:NAME is the local one's), an issuer allowed
        to hold admin rights."""
        for index, admin in enumerate(self.admins):
            try:
                issuer, _ = parse_principal(admin)
            except ValueError as e:
                yield problem(str(e), "admins", index, sentence=True)
                continue
            if issuer == LOCAL_ISSUER and not self.identity.local.enabled:
                yield problem(
                    f"'{admin}' is of the broker's own issuer, which is disabled "
                    "(identity.local.enabled: false)",
                    "admins",
                    index,
                    sentence=True,
                )
            elif not self.has_issuer(issuer):
                yield problem(
                    f"'{admin}' names issuer '{issuer}', which is not configured (the broker's "
                    "own agents are written agent:NAME, another issuer's ISSUER:SUBJECT)",
                    "admins",
                    index,
                    sentence=True,
                )
            elif issuer not in self.identity.admin_issuers:
                yield problem(
                    f"'{admin}' is of issuer '{issuer}', which identity.admin_issuers does not "
                    "allow to hold admin rights",
                    "admins",
                    index,
                    sentence=True,
                )


LABELS = Labels("config")


@cache
def _schema() -> TypeAdapter[Settings]:
    return TypeAdapter(Settings)


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file (or the defaults when ``path`` is None), with the
    environment's variables applied.

    Raises :class:`InvalidFileError` with every problem found.
    """
    environ = os.environ if environ is None else environ
    try:
        document = read_document(path) if path is not None else Document("<defaults>", None)
    except DocumentError as e:
        raise InvalidFileError([e.problem]) from e
    data = {} if document.data is None else document.data
    problems = _secrets_written(document, data) if isinstance(data, dict) else []
    if isinstance(data, dict):
        _apply_environment(data, environ)
    base = path.parent if path is not None else None
    outcome = validate(_schema(), document, LABELS, data, {"base": base})
    loaded, found = outcome
    problems.extend(found)
    if problems or loaded is None:
        raise InvalidFileError(sorted(problems, key=lambda p: (p.line, p.column)))
    return replace(loaded, source=document.name)


def _secrets_written(document: Document, data: dict[str, Any]) -> list[Problem]:
    """A problem for each secret written in the file (each is removed from ``data``)."""
    problems = []
    for path, variable in SECRET_OVERRIDES.items():
        *parents, key = path.split(".")
        holder: object = data
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if path in WRITABLE_IN_FILE or not isinstance(holder, dict) or key not in holder:
            continue
        del holder[key]
        reason = f"{path} must not be written in the file; set {variable}"
        problems.append(document.problem(tuple(path.split(".")), reason))
    return problems


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Set each setting whose variable is set (and not empty), as if the file said it."""
    for path, variable in SECRET_OVERRIDES.items():
        value = environ.get(variable)
        if not value:
            continue
        *parents, key = path.split(".")
        holder: object = data
        for index, part in enumerate(parents):
            if not isinstance(holder, dict):
                break
            if part not in holder and ".".join(parents[: index + 1]) in OPTIONAL_BLOCKS:
                holder = None
                break
            holder = holder.setdefault(part, {})
        if isinstance(holder, dict):
            holder[key] = value


def require_valid(path: Path | None) -> Settings:
    """Load settings or raise :class:`ConfigError` naming every problem (for start-up)."""
    try:
        return load_settings(path)
    except InvalidFileError as e:
        lines = "\n".join(str(p) for p in e.problems)
        raise ConfigError(f"Refusing to start with invalid settings:\n{lines}") from e
