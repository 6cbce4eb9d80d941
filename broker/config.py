"""The broker's settings: one YAML file, secrets from the environment, validated, fail closed.

``load_settings`` reports every problem as ``file:line:column: reason`` (the same format as
scope validation) and the broker refuses to start on any of them. Secrets (the Vault token,
Slack tokens, the store URL's password) may come from environment variables so the file can
be committed; a secret is never echoed in an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from broker.errors import ConfigError, InvalidFileError, Problem
from broker.yamldoc import DocumentError, Reader, parse, read_text

ENV_PREFIX = "BROKER_"
# Environment variables that override a setting (the setting's dotted path -> variable).
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

NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,20}")
ALGORITHMS = {
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
}


@dataclass(frozen=True)
class Approver:
    name: str
    display_name: str = ""
    email: str | None = None
    slack_user_id: str | None = None
    oidc_subject: str | None = None
    notify_directly: bool = False


@dataclass(frozen=True)
class OidcIssuer:
    """An external identity provider whose JWTs identify agents (CI jobs, workloads)."""

    name: str
    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256",)
    subject_claim: str = "sub"
    identity_claims: tuple[str, ...] = ("sub",)
    required_claims: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalIssuer:
    """Tokens the broker mints itself (``broker token mint``) for the embedded default."""

    enabled: bool = True
    issuer: str = "broker-local"
    audience: str = "credential-broker"
    max_ttl_seconds: int = 24 * 3600


@dataclass(frozen=True)
class IdentitySettings:
    local: LocalIssuer = field(default_factory=LocalIssuer)
    oidc: tuple[OidcIssuer, ...] = ()
    max_token_bytes: int = 8192
    leeway_seconds: int = 30
    jwks_cache_seconds: int = 600
    jwks_min_refresh_seconds: int = 30


@dataclass(frozen=True)
class AwsSettings:
    """How the broker reaches AWS with its own identity (the standard boto3 chain)."""

    endpoint_url: str | None = None  # e.g. a moto server in development
    default_region: str = "us-east-1"
    broker_principal_arn: str | None = None  # who the tier roles' trust policy lets in
    # A role the broker assumes in each account to manage tier roles (apply, kill switch);
    # ${account} is replaced. Unset: the broker's own credentials, in its own account only.
    admin_role_arn: str | None = None
    regional_sts: bool = True


VAULT_AUTH_METHODS = ("token", "approle", "kubernetes", "jwt")
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class VaultAuthSettings:
    """How the broker proves itself to Vault: the token in BROKER_VAULT_TOKEN ("token"), or
    a login it repeats before its token runs out (AppRole, Kubernetes, JWT)."""

    method: str = "token"
    mount: str | None = None  # where the auth method is mounted; default: its name
    role: str | None = None  # kubernetes, jwt: the Vault role to log in as
    role_id: str | None = None  # approle
    secret_id: str | None = None  # approle: from BROKER_VAULT_SECRET_ID only
    jwt_path: Path = SERVICE_ACCOUNT_TOKEN  # kubernetes, jwt: read again at every login

    @property
    def mount_point(self) -> str:
        return self.mount or self.method


@dataclass(frozen=True)
class VaultSettings:
    url: str | None = None
    token: str | None = None
    auth: VaultAuthSettings = field(default_factory=VaultAuthSettings)
    public_url: str | None = None  # the address agents use, when it differs from url
    # Agent tokens are created through this token role (orphan, only broker-* policies), so
    # the broker's own token needs no sudo. Empty: create-orphan, which needs sudo.
    token_role: str = "broker-tier"
    namespace: str | None = None
    verify_tls: bool = True


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str | None = None
    signing_secret: str | None = None
    webhook_url: str | None = None
    api_base_url: str = "https://slack.com/api/"
    default_channel: str | None = None


@dataclass(frozen=True)
class OidcSignIn:
    """Optional approver sign-in through an OIDC provider (instead of personal links)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    approver_claim: str = "email"
    # A signed-in approver's browser session ends after this long without a request, and
    # after session_max in any case.
    session_idle_seconds: int = 30 * 60
    session_max_seconds: int = 8 * 3600


@dataclass(frozen=True)
class ApprovalSettings:
    link_ttl_seconds: int = 24 * 3600
    collect_window_seconds: int = 15 * 60
    # Break-glass credentials live the lesser of this and the tier's TTL.
    break_glass_ttl_seconds: int = 15 * 60
    oidc: OidcSignIn | None = None


@dataclass(frozen=True)
class BreakerSettings:
    """Automatic freeze of an agent showing the patterns that precede outages."""

    window_seconds: int = 3600
    max_denials: int = 5
    max_destructive_requests: int = 5
    max_out_of_scope: int = 3


@dataclass(frozen=True)
class Settings:
    scopes_dir: Path = Path("scopes")
    state_dir: Path = Path(".broker")
    public_url: str = "http://127.0.0.1:8080"
    listen: str = "127.0.0.1:8080"
    workers: int = 2
    threads: int = 8
    store_url: str | None = None  # default: SQLite file in state_dir
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    admins: tuple[str, ...] = ()
    approvers: Mapping[str, Approver] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    aws: AwsSettings = field(default_factory=AwsSettings)
    vault: VaultSettings = field(default_factory=VaultSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    cache_margin_seconds: int = 300
    cache_margin_ratio: float = 0.2
    max_body_bytes: int = 64 * 1024
    upstream_deadline_seconds: float = 10.0
    # Each upstream's circuit (per worker): open after this many failed calls in a row, for
    # this long, then one trial call.
    circuit_failures: int = 5
    circuit_cooldown_seconds: float = 10.0
    audit_stream: str | None = None  # "-" for stdout, or a file path
    # A bearer token GET /metrics requires (BROKER_METRICS_TOKEN only); none: open.
    metrics_token: str | None = None
    source: str = "<defaults>"

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


TOP_KEYS = {
    "scopes_dir",
    "state_dir",
    "public_url",
    "listen",
    "workers",
    "threads",
    "store",
    "identity",
    "admins",
    "approvers",
    "groups",
    "aws",
    "vault",
    "slack",
    "approvals",
    "breaker",
    "cache",
    "limits",
    "audit",
}


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file (or the defaults when ``path`` is None).

    Raises :class:`InvalidFileError` with every problem found.
    """
    environ = os.environ if environ is None else environ
    if path is None:
        return _apply_environment(Settings(), environ, "<defaults>")
    name = str(path)
    try:
        node = parse(read_text(path), name)
    except DocumentError as e:
        raise InvalidFileError([e.problem]) from e
    reader = _ConfigReader(name, path.parent)
    settings = reader.read(node) if node is not None else Settings()
    if reader.problems:
        raise InvalidFileError(reader.problems)
    settings = _apply_environment(replace(settings, source=name), environ, name)
    problems = _check_semantics(settings, name)
    if problems:
        raise InvalidFileError(problems)
    return settings


def _apply_environment(settings: Settings, environ: Mapping[str, str], name: str) -> Settings:
    def env(key: str) -> str | None:
        value = environ.get(SECRET_OVERRIDES[key])
        return value if value else None

    settings = replace(
        settings,
        store_url=env("store.url") or settings.store_url,
        metrics_token=env("metrics.token") or settings.metrics_token,
        vault=replace(
            settings.vault,
            token=env("vault.token") or settings.vault.token,
            auth=replace(
                settings.vault.auth,
                secret_id=env("vault.auth.secret_id") or settings.vault.auth.secret_id,
            ),
        ),
        slack=replace(
            settings.slack,
            bot_token=env("slack.bot_token") or settings.slack.bot_token,
            signing_secret=env("slack.signing_secret") or settings.slack.signing_secret,
            webhook_url=env("slack.webhook_url") or settings.slack.webhook_url,
        ),
    )
    if settings.approvals.oidc is not None:
        secret = env("approvals.oidc.client_secret") or settings.approvals.oidc.client_secret
        settings = replace(
            settings,
            approvals=replace(
                settings.approvals, oidc=replace(settings.approvals.oidc, client_secret=secret)
            ),
        )
    return settings


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def oidc_sign_in_problem(oidc: OidcSignIn) -> str | None:
    """Why approver sign-in cannot start with these settings, or None."""
    if not oidc.client_secret:
        return "approvals.oidc has no client secret: set BROKER_OIDC_CLIENT_SECRET"
    issuer = urlsplit(oidc.issuer)
    if issuer.scheme != "https" and not (issuer.scheme == "http" and issuer.hostname in LOOPBACK):
        return "approvals.oidc.issuer must use https (it vouches for approvers)"
    return None


def _check_semantics(settings: Settings, name: str) -> list[Problem]:
    """Cross-field rules that need the whole file (and the environment) to decide."""
    problems = []

    def problem(reason: str) -> None:
        problems.append(Problem(name, 1, 1, reason))

    for group, members in settings.groups.items():
        for member in members:
            if member not in settings.approvers:
                problem(f"group '{group}' names '{member}', who is not in approvers")
    url = urlsplit(settings.public_url)
    if url.scheme == "http" and url.hostname not in ("127.0.0.1", "localhost", "::1"):
        problem("public_url must use https (approval links carry personal tokens)")
    if settings.slack.bot_token and not settings.slack.signing_secret:
        problem(
            "slack.bot_token is set but slack.signing_secret is not: button clicks could "
            "not be verified (set BROKER_SLACK_SIGNING_SECRET)"
        )
    oidc = settings.approvals.oidc
    sign_in = oidc_sign_in_problem(oidc) if oidc is not None else None
    if sign_in:
        problem(sign_in)
    auth = settings.vault.auth
    if auth.method == "approle" and not auth.secret_id:
        problem(
            "vault.auth.method is approle: set BROKER_VAULT_SECRET_ID to the AppRole's secret id"
        )
    if auth.method != "token" and settings.vault.token:
        problem(
            f"BROKER_VAULT_TOKEN is set but vault.auth.method is {auth.method}: the broker "
            "logs in by itself; unset one of them"
        )
    store = settings.store_url or ""
    if store and not store.startswith(("sqlite:", "postgresql")):
        problem("store.url must be a sqlite:/// or postgresql+psycopg:// URL")
    return problems


class _ConfigReader(Reader):
    def __init__(self, name: str, base: Path) -> None:
        super().__init__(name)
        self.base = base

    def _path(self, node: yaml.Node, what: str) -> Path | None:
        value = self.string(node, what)
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else (self.base / path)

    def _url(self, node: yaml.Node, what: str) -> str | None:
        value = self.string(node, what, re.compile(r"https?://[^\s]+"), "an http(s) URL")
        return value

    def read(self, node: yaml.Node) -> Settings:
        top = self.mapping(node, "config", TOP_KEYS)
        if top is None:
            return Settings()
        defaults = Settings()
        margin, ratio = self._cache(top.get("cache"), defaults)
        limits = self._limits(top.get("limits"), defaults)
        return Settings(
            scopes_dir=self.each(
                top, "scopes_dir", lambda n: self._path(n, "scopes_dir"), self.base / "scopes"
            ),
            state_dir=self.each(
                top, "state_dir", lambda n: self._path(n, "state_dir"), self.base / ".broker"
            ),
            public_url=self.each(
                top, "public_url", lambda n: self._url(n, "public_url"), defaults.public_url
            ).rstrip("/"),
            listen=self.each(
                top,
                "listen",
                lambda n: self.string(
                    n, "listen", re.compile(r"[\w.:\[\]-]+:\d{1,5}"), "host:port"
                ),
                defaults.listen,
            ),
            workers=self.each(
                top, "workers", lambda n: self.integer(n, "workers", 1, 64), defaults.workers
            ),
            threads=self.each(
                top, "threads", lambda n: self.integer(n, "threads", 1, 256), defaults.threads
            ),
            store_url=self._store(top.get("store")),
            identity=self.each(top, "identity", self._identity, IdentitySettings()),
            admins=tuple(
                v
                for v, _ in self.each(
                    top, "admins", lambda n: self.strings(n, "admins", allow_empty=True), []
                )
            ),
            approvers=self.each(top, "approvers", self._approvers, {}),
            groups=self.each(top, "groups", self._groups, {}),
            aws=self.each(top, "aws", self._aws, AwsSettings()),
            vault=self.each(top, "vault", self._vault, VaultSettings()),
            slack=self.each(top, "slack", self._slack, SlackSettings()),
            approvals=self.each(top, "approvals", self._approvals, ApprovalSettings()),
            breaker=self.each(top, "breaker", self._breaker, BreakerSettings()),
            cache_margin_seconds=margin,
            cache_margin_ratio=ratio,
            **limits,
            audit_stream=self._audit(top.get("audit")),
        )

    def _store(self, node: yaml.Node | None) -> str | None:
        if node is None:
            return None
        fields = self.mapping(node, "store", {"url"})
        if not fields or "url" not in fields:
            return None
        return self.string(fields["url"], "store.url")

    def _identity(self, node: yaml.Node) -> IdentitySettings | None:
        fields = self.mapping(
            node,
            "identity",
            {"local", "oidc", "max_token_bytes", "leeway", "jwks_cache", "jwks_min_refresh"},
        )
        if fields is None:
            return None
        defaults = IdentitySettings()
        local = defaults.local
        if "local" in fields:
            lf = self.mapping(
                fields["local"], "identity.local", {"enabled", "issuer", "audience", "max_ttl"}
            )
            if lf is not None:
                local = LocalIssuer(
                    enabled=self.each(
                        lf, "enabled", lambda n: self.boolean(n, "identity.local.enabled"), True
                    ),
                    issuer=self.each(
                        lf,
                        "issuer",
                        lambda n: self.string(n, "identity.local.issuer"),
                        local.issuer,
                    ),
                    audience=self.each(
                        lf,
                        "audience",
                        lambda n: self.string(n, "identity.local.audience"),
                        local.audience,
                    ),
                    max_ttl_seconds=self.each(
                        lf,
                        "max_ttl",
                        lambda n: self.duration(n, "identity.local.max_ttl"),
                        local.max_ttl_seconds,
                    ),
                )
        issuers = []
        for item in self.each(fields, "oidc", lambda n: self.sequence(n, "identity.oidc"), []):
            issuer = self._oidc_issuer(item)
            if issuer is not None:
                issuers.append(issuer)
        return IdentitySettings(
            local=local,
            oidc=tuple(issuers),
            max_token_bytes=self.each(
                fields,
                "max_token_bytes",
                lambda n: self.integer(n, "identity.max_token_bytes", 512, 65536),
                defaults.max_token_bytes,
            ),
            leeway_seconds=self.each(
                fields,
                "leeway",
                lambda n: self.duration(n, "identity.leeway"),
                defaults.leeway_seconds,
            ),
            jwks_cache_seconds=self.each(
                fields,
                "jwks_cache",
                lambda n: self.duration(n, "identity.jwks_cache"),
                defaults.jwks_cache_seconds,
            ),
            jwks_min_refresh_seconds=self.each(
                fields,
                "jwks_min_refresh",
                lambda n: self.duration(n, "identity.jwks_min_refresh"),
                defaults.jwks_min_refresh_seconds,
            ),
        )

    def _oidc_issuer(self, node: yaml.Node) -> OidcIssuer | None:
        fields = self.mapping(
            node,
            "identity.oidc entry",
            {
                "name",
                "issuer",
                "audience",
                "jwks_url",
                "algorithms",
                "subject_claim",
                "identity_claims",
                "required_claims",
            },
            ("name", "issuer", "audience", "jwks_url"),
        )
        if fields is None:
            return None
        name = self.string(fields.get("name"), "oidc name", NAME)
        issuer = self.string(fields.get("issuer"), "oidc issuer")
        audience = self.string(fields.get("audience"), "oidc audience")
        jwks_url = self._url(fields["jwks_url"], "oidc jwks_url") if "jwks_url" in fields else None
        algorithms = self.each(
            fields,
            "algorithms",
            lambda n: self.strings(
                n,
                "oidc algorithms",
                re.compile("|".join(sorted(ALGORITHMS))),
                "asymmetric algorithms only: " + ", ".join(sorted(ALGORITHMS)),
            ),
            [("RS256", None)],
        )
        subject_claim = self.each(
            fields, "subject_claim", lambda n: self.string(n, "oidc subject_claim"), "sub"
        )
        identity_claims = self.each(
            fields, "identity_claims", lambda n: self.strings(n, "oidc identity_claims"), []
        )
        required = self.each(
            fields, "required_claims", lambda n: self.strings(n, "oidc required_claims"), []
        )
        if None in (name, issuer, audience, jwks_url):
            return None
        claims = tuple(v for v, _ in identity_claims) or (subject_claim,)
        return OidcIssuer(
            name=name or "",
            issuer=issuer or "",
            audience=audience or "",
            jwks_url=jwks_url or "",
            algorithms=tuple(v for v, _ in algorithms),
            subject_claim=subject_claim,
            identity_claims=claims,
            required_claims=tuple(v for v, _ in required),
        )

    def _approvers(self, node: yaml.Node) -> dict[str, Approver] | None:
        entries = self.free_mapping(node, "approvers")
        if entries is None:
            return None
        result = {}
        for name, value in entries.items():
            if not NAME.fullmatch(name):
                self.error(
                    value,
                    f"approver name '{name}' must be lower-case letters, digits, '.', '_' or '-'",
                )
                continue
            fields = self.mapping(
                value,
                f"approver '{name}'",
                {"name", "email", "slack_user_id", "oidc_subject", "notify_directly"},
            )
            if fields is None:
                continue
            result[name] = Approver(
                name=name,
                display_name=self.each(
                    fields, "name", lambda n: self.string(n, "approver name"), name
                ),
                email=self.each(
                    fields,
                    "email",
                    lambda n: self.string(
                        n, "approver email", re.compile(r"[^@\s]+@[^@\s]+"), "an email address"
                    ),
                    None,
                ),
                slack_user_id=self.each(
                    fields,
                    "slack_user_id",
                    lambda n: self.string(
                        n, "approver slack_user_id", SLACK_USER, "a Slack user id such as U024BE7LH"
                    ),
                    None,
                ),
                oidc_subject=self.each(
                    fields, "oidc_subject", lambda n: self.string(n, "approver oidc_subject"), None
                ),
                notify_directly=self.each(
                    fields,
                    "notify_directly",
                    lambda n: self.boolean(n, "approver notify_directly"),
                    False,
                ),
            )
        return result

    def _groups(self, node: yaml.Node) -> dict[str, tuple[str, ...]] | None:
        entries = self.free_mapping(node, "groups")
        if entries is None:
            return None
        result = {}
        for name, value in entries.items():
            members = self.strings(value, f"group '{name}'")
            if members is not None:
                result[name] = tuple(v for v, _ in members)
        return result

    def _aws(self, node: yaml.Node) -> AwsSettings | None:
        fields = self.mapping(
            node,
            "aws",
            {
                "endpoint_url",
                "default_region",
                "broker_principal_arn",
                "regional_sts",
                "admin_role_arn",
            },
        )
        if fields is None:
            return None
        return AwsSettings(
            endpoint_url=self.each(
                fields, "endpoint_url", lambda n: self._url(n, "aws.endpoint_url"), None
            ),
            default_region=self.each(
                fields,
                "default_region",
                lambda n: self.string(n, "aws.default_region"),
                "us-east-1",
            ),
            broker_principal_arn=self.each(
                fields,
                "broker_principal_arn",
                lambda n: self.string(
                    n,
                    "aws.broker_principal_arn",
                    re.compile(r"arn:aws[\w-]*:(iam|sts)::\d{12}:[\w+=,.@/-]+"),
                    "an IAM ARN",
                ),
                None,
            ),
            regional_sts=self.each(
                fields, "regional_sts", lambda n: self.boolean(n, "aws.regional_sts"), True
            ),
            admin_role_arn=self.each(
                fields,
                "admin_role_arn",
                lambda n: self.string(
                    n,
                    "aws.admin_role_arn",
                    re.compile(r"arn:aws[\w-]*:iam::(\d{12}|\$\{account\}):role/[\w+=,.@/-]+"),
                    "a role ARN, ${account} allowed",
                ),
                None,
            ),
        )

    def _vault(self, node: yaml.Node) -> VaultSettings | None:
        fields = self.mapping(
            node,
            "vault",
            {"url", "token", "namespace", "verify_tls", "public_url", "token_role", "auth"},
        )
        if fields is None:
            return None
        if "token" in fields:
            self.error(
                fields["token"],
                "vault.token must not be written in the file; set BROKER_VAULT_TOKEN",
            )
        return VaultSettings(
            url=self.each(fields, "url", lambda n: self._url(n, "vault.url"), None),
            namespace=self.each(
                fields, "namespace", lambda n: self.string(n, "vault.namespace"), None
            ),
            verify_tls=self.each(
                fields, "verify_tls", lambda n: self.boolean(n, "vault.verify_tls"), True
            ),
            public_url=self.each(
                fields, "public_url", lambda n: self._url(n, "vault.public_url"), None
            ),
            token_role=self.each(
                fields,
                "token_role",
                lambda n: self.string(
                    n, "vault.token_role", re.compile(r"[A-Za-z0-9_-]{0,64}"), "a role name"
                ),
                "broker-tier",
            ),
            auth=self.each(fields, "auth", self._vault_auth, VaultAuthSettings()),
        )

    def _vault_auth(self, node: yaml.Node) -> VaultAuthSettings | None:
        fields = self.mapping(
            node, "vault.auth", {"method", "mount", "role", "role_id", "jwt_path", "secret_id"}
        )
        if fields is None:
            return None
        if "secret_id" in fields:
            self.error(
                fields["secret_id"],
                "vault.auth.secret_id is a secret: set BROKER_VAULT_SECRET_ID instead of "
                "writing it here",
            )
        name = re.compile(r"[\w.@-]{1,128}")
        method = self.each(
            fields,
            "method",
            lambda n: self.string(
                n,
                "vault.auth.method",
                re.compile("|".join(VAULT_AUTH_METHODS)),
                f"one of {', '.join(VAULT_AUTH_METHODS)}",
            ),
            "token",
        )
        settings = VaultAuthSettings(
            method=method,
            mount=self.each(
                fields,
                "mount",
                lambda n: self.string(n, "vault.auth.mount", re.compile(r"[\w.-]+(/[\w.-]+)*")),
                None,
            ),
            role=self.each(fields, "role", lambda n: self.string(n, "vault.auth.role", name), None),
            role_id=self.each(
                fields, "role_id", lambda n: self.string(n, "vault.auth.role_id", name), None
            ),
            jwt_path=self.each(
                fields,
                "jwt_path",
                lambda n: self._path(n, "vault.auth.jwt_path"),
                SERVICE_ACCOUNT_TOKEN,
            ),
        )
        needs = {"approle": ("role_id",), "kubernetes": ("role",), "jwt": ("role",)}
        for key in needs.get(method, ()):
            if key not in fields:
                self.error(node, f"vault.auth: method {method} needs '{key}'")
        unused = {
            "token": {"mount", "role", "role_id", "jwt_path"},
            "approle": {"role", "jwt_path"},
            "kubernetes": {"role_id"},
            "jwt": {"role_id"},
        }
        for key in sorted(unused.get(method, set()) & set(fields)):
            self.error(fields[key], f"vault.auth.{key} does not apply to method {method}")
        return settings

    def _slack(self, node: yaml.Node) -> SlackSettings | None:
        fields = self.mapping(
            node,
            "slack",
            {"api_base_url", "default_channel", "bot_token", "signing_secret", "webhook_url"},
        )
        if fields is None:
            return None
        for secret in ("bot_token", "signing_secret", "webhook_url"):
            if secret in fields:
                variable = SECRET_OVERRIDES[f"slack.{secret}"]
                self.error(
                    fields[secret],
                    f"slack.{secret} is a secret: set {variable} instead of writing it here",
                )
        return SlackSettings(
            api_base_url=self.each(
                fields,
                "api_base_url",
                lambda n: self._url(n, "slack.api_base_url"),
                SlackSettings.api_base_url,
            ),
            default_channel=self.each(
                fields, "default_channel", lambda n: self.string(n, "slack.default_channel"), None
            ),
        )

    def _approvals(self, node: yaml.Node) -> ApprovalSettings | None:
        fields = self.mapping(
            node, "approvals", {"link_ttl", "collect_window", "break_glass_ttl", "oidc"}
        )
        if fields is None:
            return None
        defaults = ApprovalSettings()
        oidc = None
        if "oidc" in fields:
            of = self.mapping(
                fields["oidc"],
                "approvals.oidc",
                {"issuer", "client_id", "approver_claim", "session_idle", "session_max"},
                ("issuer", "client_id"),
            )
            if of is not None:
                issuer = (
                    self._url(of["issuer"], "approvals.oidc.issuer") if "issuer" in of else None
                )
                client_id = self.string(of.get("client_id"), "approvals.oidc.client_id")
                if issuer and client_id:
                    oidc = OidcSignIn(
                        issuer=issuer,
                        client_id=client_id,
                        approver_claim=self.each(
                            of,
                            "approver_claim",
                            lambda n: self.string(n, "approvals.oidc.approver_claim"),
                            "email",
                        ),
                        session_idle_seconds=self.each(
                            of,
                            "session_idle",
                            lambda n: self.duration(n, "approvals.oidc.session_idle"),
                            OidcSignIn.session_idle_seconds,
                        ),
                        session_max_seconds=self.each(
                            of,
                            "session_max",
                            lambda n: self.duration(n, "approvals.oidc.session_max"),
                            OidcSignIn.session_max_seconds,
                        ),
                    )
        return ApprovalSettings(
            link_ttl_seconds=self.each(
                fields,
                "link_ttl",
                lambda n: self.duration(n, "approvals.link_ttl"),
                defaults.link_ttl_seconds,
            ),
            collect_window_seconds=self.each(
                fields,
                "collect_window",
                lambda n: self.duration(n, "approvals.collect_window"),
                defaults.collect_window_seconds,
            ),
            break_glass_ttl_seconds=self._break_glass_ttl(fields.get("break_glass_ttl")),
            oidc=oidc,
        )

    def _break_glass_ttl(self, node: yaml.Node | None) -> int:
        default = ApprovalSettings.break_glass_ttl_seconds
        seconds = self.duration(node, "approvals.break_glass_ttl") if node is not None else None
        if seconds is not None and not 60 <= seconds <= 3600:
            self.error(node, "approvals.break_glass_ttl must be 1m to 1h")
            return default
        return default if seconds is None else seconds

    def _breaker(self, node: yaml.Node) -> BreakerSettings | None:
        fields = self.mapping(
            node,
            "breaker",
            {"window", "max_denials", "max_destructive_requests", "max_out_of_scope"},
        )
        if fields is None:
            return None
        d = BreakerSettings()
        return BreakerSettings(
            window_seconds=self.each(
                fields, "window", lambda n: self.duration(n, "breaker.window"), d.window_seconds
            ),
            max_denials=self.each(
                fields,
                "max_denials",
                lambda n: self.integer(n, "breaker.max_denials", 1),
                d.max_denials,
            ),
            max_destructive_requests=self.each(
                fields,
                "max_destructive_requests",
                lambda n: self.integer(n, "breaker.max_destructive_requests", 1),
                d.max_destructive_requests,
            ),
            max_out_of_scope=self.each(
                fields,
                "max_out_of_scope",
                lambda n: self.integer(n, "breaker.max_out_of_scope", 1),
                d.max_out_of_scope,
            ),
        )

    def _cache(self, node: yaml.Node | None, defaults: Settings) -> tuple[int, float]:
        margin, ratio = defaults.cache_margin_seconds, defaults.cache_margin_ratio
        fields = self.mapping(node, "cache", {"margin", "margin_ratio"}) if node else None
        if not fields:
            return margin, ratio
        margin = self.each(fields, "margin", lambda n: self.duration(n, "cache.margin"), margin)
        if "margin_ratio" in fields:
            value_node = fields["margin_ratio"]
            value = self.scalar(value_node) if isinstance(value_node, yaml.ScalarNode) else None
            if isinstance(value, float | int) and not isinstance(value, bool) and 0 <= value < 1:
                ratio = float(value)
            else:
                self.error(value_node, "cache.margin_ratio must be a number from 0 to 1")
        return margin, ratio

    def _limits(self, node: yaml.Node | None, defaults: Settings) -> dict[str, Any]:
        """The Settings fields under ``limits`` (the defaults for what is absent or bad)."""
        limits: dict[str, Any] = {
            "max_body_bytes": defaults.max_body_bytes,
            "upstream_deadline_seconds": defaults.upstream_deadline_seconds,
            "circuit_failures": defaults.circuit_failures,
            "circuit_cooldown_seconds": defaults.circuit_cooldown_seconds,
        }
        allowed = {"max_body_bytes", "upstream_deadline", "circuit_failures", "circuit_cooldown"}
        fields = self.mapping(node, "limits", allowed) if node else None
        if not fields:
            return limits
        limits["max_body_bytes"] = self.each(
            fields,
            "max_body_bytes",
            lambda n: self.integer(n, "limits.max_body_bytes", 1024, 10 * 1024 * 1024),
            limits["max_body_bytes"],
        )
        limits["circuit_failures"] = self.each(
            fields,
            "circuit_failures",
            lambda n: self.integer(n, "limits.circuit_failures", 1, 100),
            limits["circuit_failures"],
        )
        for key, field_name, low, high, bounds in (
            ("upstream_deadline", "upstream_deadline_seconds", 1, 120, "1s to 2m"),
            ("circuit_cooldown", "circuit_cooldown_seconds", 1, 600, "1s to 10m"),
        ):
            if key in fields:
                seconds = self.duration(fields[key], f"limits.{key}")
                if seconds is not None and not low <= seconds <= high:
                    self.error(fields[key], f"limits.{key} must be {bounds}")
                elif seconds is not None:
                    limits[field_name] = float(seconds)
        return limits

    def _audit(self, node: yaml.Node | None) -> str | None:
        if node is None:
            return None
        fields = self.mapping(node, "audit", {"stream"})
        if not fields or "stream" not in fields:
            return None
        return self.string(fields["stream"], "audit.stream")


def require_valid(path: Path | None) -> Settings:
    """Load settings or raise :class:`ConfigError` naming every problem (for start-up)."""
    try:
        return load_settings(path)
    except InvalidFileError as e:
        lines = "\n".join(str(p) for p in e.problems)
        raise ConfigError(f"Refusing to start with invalid settings:\n{lines}") from e
