"""Load scope files into the model, reporting every structural problem with its position.

Structure only: keys, types, names, placeholders, durations. The fail-closed policy rules
(access levels, wildcards, destructive actions, overlaps, TTL bounds, approval counts) live
in :mod:`broker.scopes.lint` and run on the loaded model.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from broker.errors import Problem
from broker.policy.globs import placeholders_in
from broker.scopes.model import (
    PLACEHOLDERS,
    TIERS,
    Approval,
    AwsEnvironment,
    AwsStatement,
    DatabaseEnvironment,
    Environment,
    Freeze,
    Position,
    RateLimit,
    Requester,
    Scope,
    Tier,
    TierName,
    VaultKv,
)
from broker.yamldoc import DocumentError, Reader, parse, read_text

API_VERSION = "broker/v1"
KIND = "Scope"
SCOPE_SUFFIXES = (".yaml", ".yml")

NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
ACCOUNT = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]")
ROLE_ARN = re.compile(
    r"arn:(?:aws|aws-cn|aws-us-gov):iam::(?:\$\{account\}|[0-9]{12}):role/[\w+=,.@/-]{1,512}"
)
ACTION = re.compile(r"\*|[a-z0-9-]+:[A-Za-z0-9*?]+")
# No whitespace, quotes, backslashes or control characters in a resource pattern.
RESOURCE = re.compile(r"[^\s\"'\\\x00-\x1f\x7f]+")
VAULT_MOUNT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_./-]*")
# Vault ACL globs: '+' stands for one path segment, '*' only at the very end (a prefix).
VAULT_PATH = re.compile(r"[A-Za-z0-9_.${}+-][A-Za-z0-9_./${}+-]*\*?")
SQL_IDENT = re.compile(r"[a-z_][a-z0-9_$]{0,62}")
SQL_OBJECT = re.compile(r"[a-z_][a-z0-9_$]{0,62}\.(?:[a-z_][a-z0-9_$]{0,62}|\*)")
DB_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
SLACK_CHANNEL = re.compile(r"[#@]?[A-Za-z0-9._-]{1,80}")
RATE = re.compile(r"([0-9]{1,6})/([0-9]*)([smhd])")
TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Keys of each mapping, in one place so unknown keys are reported precisely.
REQUIRED_TOP_KEYS = ("apiVersion", "kind", "metadata", "requesters", "environments", "tiers")
TOP_KEYS = {"apiVersion", "kind", "metadata", "requesters", "environments", "tiers", "freezes"}
METADATA_KEYS = {"service", "description", "owners"}
REQUESTER_KEYS = {"subject", "claims"}
ENVIRONMENT_KEYS = {"aws", "vault", "database"}
AWS_ENV_KEYS = {"account", "regions", "roles"}
VAULT_ENV_KEYS = {"kv"}
KV_KEYS = {"mount", "version", "paths"}
DATABASE_KEYS = {"mount", "connection", "objects", "roles", "owner_role"}
TIER_KEYS = {"ttl", "aws", "approval", "max_resources", "rate_limit", "vault"}
STATEMENT_KEYS = {"actions", "resources"}
APPROVAL_KEYS = {
    "approvers",
    "groups",
    "required",
    "delay",
    "allow_slack_approval",
    "pending_expiry",
    "channel",
    "unsafe_single_approver",
}
TIER_VAULT_KEYS = {"num_uses"}
FREEZE_KEYS = {"name", "tiers", "timezone", "start", "end", "recurring"}
RECURRING_KEYS = {"days", "start", "end"}

PathKey = tuple[object, ...]


@dataclass
class LoadedScope:
    """A scope and where each of its parts was written, for positioned lint messages."""

    scope: Scope
    positions: dict[PathKey, Position] = field(default_factory=dict)

    def position(self, *key: object) -> Position:
        """The most precise known position for a logical path into the scope."""
        probe: PathKey = tuple(key)
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return Position(self.scope.source, 1, 1)


def scope_files(path: Path) -> Iterator[Path]:
    """The scope files under a path: the file itself, or *.yaml/*.yml in a directory tree.

    Hidden names are skipped: editors' backups, and the timestamped copies behind the links
    Kubernetes makes when it mounts a ConfigMap (each scope would load twice).
    """
    if path.is_file():
        yield path
        return
    found: list[str] = []
    for root, directories, files in os.walk(path):
        directories[:] = [d for d in directories if not d.startswith(".")]
        for name in files:
            full = os.path.join(root, name)
            if not name.startswith(".") and name.endswith(SCOPE_SUFFIXES) and os.path.isfile(full):
                found.append(full)
    for full in sorted(found):
        yield Path(full)


def load_scope_file(path: Path) -> tuple[LoadedScope | None, list[Problem]]:
    """Read and structurally check one file; never raises for bad content."""
    name = str(path)
    try:
        node = parse(read_text(path), name)
    except DocumentError as e:
        return None, [e.problem]
    if node is None:
        return None, [Problem(name, 1, 1, "file is empty: expected a Scope document")]
    return _ScopeReader(name).read(node)


class _ScopeReader(Reader):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.positions: dict[PathKey, Position] = {}

    def mark(self, node: yaml.Node, *key: object) -> None:
        mark = node.start_mark
        self.positions[tuple(key)] = Position(self.name, mark.line + 1, mark.column + 1)

    def read(self, node: yaml.Node) -> tuple[LoadedScope | None, list[Problem]]:
        top = self.mapping(node, "scope", TOP_KEYS, required=REQUIRED_TOP_KEYS)
        if top is None:
            return None, self.problems
        api_version = self.string(top.get("apiVersion"), "apiVersion")
        if api_version is not None and api_version != API_VERSION:
            self.error(top["apiVersion"], f"apiVersion must be '{API_VERSION}'")
        kind = self.string(top.get("kind"), "kind")
        if kind is not None and kind != KIND:
            self.error(top["kind"], f"kind must be '{KIND}'")
        metadata = self.mapping(top.get("metadata"), "metadata", METADATA_KEYS, ("service",))
        service = description = None
        owners: list[str] = []
        if metadata is not None:
            service = self.string(
                metadata.get("service"),
                "metadata.service",
                NAME,
                "lower-case letters, digits and '-', starting with a letter, at most 40",
            )
            if "service" in metadata:
                self.mark(metadata["service"], "service")
            description = self.each(
                metadata, "description", lambda n: self.string(n, "metadata.description"), ""
            )
            owners = [
                v
                for v, _ in self.each(
                    metadata, "owners", lambda n: self.strings(n, "metadata.owners"), []
                )
            ]
        requesters = self._requesters(top.get("requesters"))
        environments = self._environments(top.get("environments"))
        tiers = self._tiers(top.get("tiers"))
        freezes = self.each(top, "freezes", self._freezes, [])
        if self.problems or service is None:
            return None, self.problems
        scope = Scope(
            service=service,
            description=description or "",
            requesters=tuple(requesters),
            environments=environments,
            tiers=tiers,
            freezes=tuple(freezes),
            owners=tuple(owners),
            source=self.name,
        )
        return LoadedScope(scope, self.positions), []

    # -- requesters -------------------------------------------------------------------

    def _requesters(self, node: yaml.Node | None) -> list[Requester]:
        if node is None:
            return []
        items = self.sequence(node, "requesters") or []
        if isinstance(node, yaml.SequenceNode) and not items:
            self.error(node, "requesters must name at least one agent identity")
        result = []
        for item in items:
            entry = self.mapping(item, "requester", REQUESTER_KEYS)
            if entry is None:
                continue
            if ("subject" in entry) == ("claims" in entry):
                self.error(item, "requester needs exactly one of 'subject' or 'claims'")
                continue
            if "subject" in entry:
                subject = self.string(entry["subject"], "requester subject")
                if subject is not None:
                    result.append(Requester(subject=subject))
                continue
            claims = self.mapping(entry["claims"], "requester claims", ())
            if claims is None:
                continue
            if not claims:
                self.error(entry["claims"], "requester claims must not be empty")
                continue
            values = {k: self.string(v, f"claim '{k}'") for k, v in claims.items()}
            for key, value in values.items():
                if value is not None and not value.strip():
                    self.error(
                        claims[key],
                        f"claim '{key}' must not be empty: an empty "
                        "pattern would only match tokens lacking the claim",
                    )
                    values[key] = None
            if all(v is not None for v in values.values()):
                result.append(Requester(claims={k: v for k, v in values.items() if v}))
        return result

    # -- environments -----------------------------------------------------------------

    def _environments(self, node: yaml.Node | None) -> dict[str, Environment]:
        if node is None:
            return {}
        envs = self.free_mapping(node, "environments")
        if envs is None:
            return {}
        if not envs:
            self.error(node, "environments must declare at least one environment")
        result = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value in envs:
                self.mark(key_node, "environments", key_node.value)
        for name, env_node in envs.items():
            if not NAME.fullmatch(name):
                self.error(
                    env_node,
                    f"environment name '{name}' must be lower-case letters, digits and '-'",
                )
                continue
            env = self._environment(name, env_node)
            if env is not None:
                result[name] = env
        return result

    def _environment(self, name: str, node: yaml.Node) -> Environment | None:
        where = f"environment '{name}'"
        fields = self.mapping(node, where, ENVIRONMENT_KEYS)
        if fields is None:
            return None
        if not fields:
            self.error(node, f"{where} must configure at least one of aws, vault, database")
        aws = self._aws_environment(where, fields["aws"]) if "aws" in fields else None
        vault = self._vault_environment(where, fields["vault"]) if "vault" in fields else None
        database = (
            self._database_environment(where, fields["database"]) if "database" in fields else None
        )
        return Environment(name=name, aws=aws, vault=vault, database=database)

    def _aws_environment(self, where: str, node: yaml.Node) -> AwsEnvironment | None:
        fields = self.mapping(node, f"{where} aws", AWS_ENV_KEYS, ("account", "regions", "roles"))
        if fields is None:
            return None
        account = None
        if "account" in fields:
            account = self.string(
                fields["account"],
                f"{where} aws.account",
                ACCOUNT,
                "a quoted string of 12 digits; unquoted numbers lose leading zeros",
            )
        regions = self.strings(
            fields.get("regions"), f"{where} aws.regions", REGION, "an AWS region such as us-east-1"
        )
        roles = self._per_tier(
            fields.get("roles"),
            f"{where} aws.roles",
            lambda n, what: self.string(
                n, what, ROLE_ARN, "an IAM role ARN: arn:aws:iam::<account>:role/<name>"
            ),
        )
        if account is None or regions is None or roles is None:
            return None
        return AwsEnvironment(
            account=account,
            regions=tuple(v for v, _ in regions),
            roles=roles,
        )

    def _per_tier(
        self,
        node: yaml.Node | None,
        what: str,
        read_value: Callable[[yaml.Node, str], str | None],
    ) -> dict[TierName, str] | None:
        fields = self.mapping(node, what, TIERS, required=("read",))
        if fields is None:
            return None
        result: dict[TierName, str] = {}
        for tier in TIERS:
            if tier in fields:
                value = read_value(fields[tier], f"{what}.{tier}")
                if value is not None:
                    result[tier] = value
        return result

    def _vault_environment(self, where: str, node: yaml.Node) -> VaultKv | None:
        fields = self.mapping(node, f"{where} vault", VAULT_ENV_KEYS, ("kv",))
        if fields is None or "kv" not in fields:
            return None
        kv = self.mapping(fields["kv"], f"{where} vault.kv", KV_KEYS, ("mount", "paths"))
        if kv is None:
            return None
        mount = self.string(kv.get("mount"), f"{where} vault.kv.mount", VAULT_MOUNT)
        version = self.each(
            kv, "version", lambda n: self.integer(n, f"{where} vault.kv.version", 1, 2), 2
        )
        paths = self.strings(
            kv.get("paths"),
            f"{where} vault.kv.paths",
            VAULT_PATH,
            "a KV path such as payments/${env}/* (no leading '/')",
        )
        if paths is not None:
            for value, item in paths:
                self._check_placeholders(value, item, f"{where} vault.kv.paths", ("env",))
                if ".." in value.split("/"):
                    self.error(item, f"{where} vault.kv.paths: '..' is not allowed")
        if mount is None or paths is None:
            return None
        return VaultKv(mount=mount.strip("/"), paths=tuple(v for v, _ in paths), version=version)

    def _database_environment(self, where: str, node: yaml.Node) -> DatabaseEnvironment | None:
        fields = self.mapping(
            node, f"{where} database", DATABASE_KEYS, ("connection", "objects", "roles")
        )
        if fields is None:
            return None
        mount = self.each(
            fields,
            "mount",
            lambda n: self.string(n, f"{where} database.mount", VAULT_MOUNT),
            "database",
        )
        connection = self.string(
            fields.get("connection"), f"{where} database.connection", DB_ROLE_NAME
        )
        objects = self.strings(
            fields.get("objects"),
            f"{where} database.objects",
            SQL_OBJECT,
            "schema.table or schema.* in lower case",
        )
        owner_role = self.each(
            fields,
            "owner_role",
            lambda n: self.string(n, f"{where} database.owner_role", SQL_IDENT, "a role name"),
            None,
        )
        roles = self._per_tier(
            fields.get("roles"),
            f"{where} database.roles",
            lambda n, what: self.string(n, what, DB_ROLE_NAME, "a Vault database role name"),
        )
        if connection is None or objects is None or roles is None:
            return None
        return DatabaseEnvironment(
            mount=mount.strip("/"),
            connection=connection,
            objects=tuple(v for v, _ in objects),
            roles=roles,
            owner_role=owner_role,
        )

    # -- tiers ------------------------------------------------------------------------

    def _tiers(self, node: yaml.Node | None) -> dict[TierName, Tier]:
        if node is None:
            return {}
        fields = self.mapping(node, "tiers", TIERS, required=("read",))
        if fields is None:
            return {}
        result: dict[TierName, Tier] = {}
        for name in TIERS:
            if name in fields:
                self.mark(fields[name], "tiers", name)
                tier = self._tier(name, fields[name])
                if tier is not None:
                    result[name] = tier
        return result

    def _tier(self, name: TierName, node: yaml.Node) -> Tier | None:
        where = f"tier '{name}'"
        fields = self.mapping(node, where, TIER_KEYS, ("ttl",))
        if fields is None:
            return None
        ttl = self.duration(fields.get("ttl"), f"{where} ttl") if "ttl" in fields else None
        if "ttl" in fields:
            self.mark(fields["ttl"], "tiers", name, "ttl")
        statements = self.each(fields, "aws", lambda n: self._statements(name, n), [])
        approval = None
        if "approval" in fields:
            self.mark(fields["approval"], "tiers", name, "approval")
            if name == "read":
                self.error(
                    fields["approval"], "tier 'read' is granted at once: it takes no approval"
                )
            else:
                approval = self._approval(name, fields["approval"])
        elif name != "read":
            self.error(node, f"{where} needs an 'approval' block (who may approve, how many)")
        max_resources = self.each(
            fields,
            "max_resources",
            lambda n: self.integer(n, f"{where} max_resources", 1, 1000),
            None,
        )
        rate_limit = self.each(fields, "rate_limit", lambda n: self._rate(n, where), None)
        num_uses = 0
        if "vault" in fields:
            vault = self.mapping(fields["vault"], f"{where} vault", TIER_VAULT_KEYS)
            if vault is not None:
                num_uses = self.each(
                    vault, "num_uses", lambda n: self.integer(n, f"{where} vault.num_uses", 0), 0
                )
        if ttl is None:
            return None
        return Tier(
            name=name,
            ttl_seconds=ttl,
            aws=tuple(statements),
            approval=approval,
            max_resources=max_resources,
            rate_limit=rate_limit,
            vault_num_uses=num_uses,
        )

    def _statements(self, tier: TierName, node: yaml.Node) -> list[AwsStatement] | None:
        items = self.sequence(node, f"tier '{tier}' aws")
        if items is None:
            return None
        result = []
        for index, item in enumerate(items):
            where = f"tier '{tier}' aws[{index}]"
            self.mark(item, "tiers", tier, "aws", index)
            fields = self.mapping(item, where, STATEMENT_KEYS, ("actions", "resources"))
            if fields is None:
                continue
            actions = self.strings(
                fields.get("actions"),
                f"{where} actions",
                ACTION,
                "service:Action, e.g. s3:GetObject",
            )
            resources = self.strings(
                fields.get("resources"),
                f"{where} resources",
                RESOURCE,
                "an ARN pattern without spaces or quotes",
            )
            for i, (_, action_node) in enumerate(actions or []):
                self.mark(action_node, "tiers", tier, "aws", index, "actions", i)
            for i, (value, resource_node) in enumerate(resources or []):
                self.mark(resource_node, "tiers", tier, "aws", index, "resources", i)
                self._check_placeholders(value, resource_node, f"{where} resources")
            if actions is None or resources is None:
                continue
            mark = item.start_mark
            result.append(
                AwsStatement(
                    actions=tuple(v for v, _ in actions),
                    resources=tuple(v for v, _ in resources),
                    position=Position(self.name, mark.line + 1, mark.column + 1),
                )
            )
        return result

    def _approval(self, tier: TierName, node: yaml.Node) -> Approval | None:
        where = f"tier '{tier}' approval"
        fields = self.mapping(node, where, APPROVAL_KEYS)
        if fields is None:
            return None
        approvers = self.each(
            fields, "approvers", lambda n: self.strings(n, f"{where} approvers"), []
        )
        groups = self.each(fields, "groups", lambda n: self.strings(n, f"{where} groups"), [])
        for value, item in approvers:
            self.mark(item, "tiers", tier, "approval", "approvers", value)
        for value, item in groups:
            self.mark(item, "tiers", tier, "approval", "groups", value)
        if not approvers and not groups:
            self.error(node, f"{where} must name approvers or groups")
        default_required = 2 if tier == "delete" else 1
        if "required" in fields:
            self.mark(fields["required"], "tiers", tier, "approval", "required")
        required = self.each(
            fields,
            "required",
            lambda n: self.integer(n, f"{where} required", 1, 10),
            default_required,
        )
        default_delay = 600 if tier == "delete" else 0
        delay = self.each(
            fields, "delay", lambda n: self.duration(n, f"{where} delay"), default_delay
        )
        slack = self.each(
            fields,
            "allow_slack_approval",
            lambda n: self.boolean(n, f"{where} allow_slack_approval"),
            tier != "delete",
        )
        expiry = self.each(
            fields, "pending_expiry", lambda n: self.duration(n, f"{where} pending_expiry"), 1800
        )
        if expiry is not None and not 60 <= expiry <= 7 * 86400:
            self.error(
                fields["pending_expiry"], f"{where} pending_expiry must be between 1m and 7d"
            )
        channel = self.each(
            fields,
            "channel",
            lambda n: self.string(n, f"{where} channel", SLACK_CHANNEL, "a Slack channel"),
            None,
        )
        unsafe = self.each(
            fields,
            "unsafe_single_approver",
            lambda n: self.string(n, f"{where} unsafe_single_approver (the reason)"),
            None,
        )
        if unsafe is not None and len(unsafe.strip()) < 10:
            self.error(
                fields["unsafe_single_approver"],
                f"{where} unsafe_single_approver must explain why, in a sentence",
            )
        return Approval(
            approvers=tuple(v for v, _ in approvers),
            groups=tuple(v for v, _ in groups),
            required=required,
            delay_seconds=delay,
            allow_slack_approval=slack,
            pending_expiry_seconds=expiry,
            channel=channel,
            unsafe_single_approver=unsafe,
        )

    def _rate(self, node: yaml.Node, where: str) -> RateLimit | None:
        text = self.string(node, f"{where} rate_limit", RATE, "count/period such as 10/h or 2/d")
        if text is None:
            return None
        match = RATE.fullmatch(text)
        assert match
        multiple = int(match.group(2) or 1)
        count = int(match.group(1))
        if count == 0 or multiple == 0:
            self.error(node, f"{where} rate_limit must allow at least one request per period")
            return None
        return RateLimit(count=count, per_seconds=multiple * SECONDS_PER_UNIT[match.group(3)])

    # -- freezes ----------------------------------------------------------------------

    def _freezes(self, node: yaml.Node) -> list[Freeze] | None:
        items = self.sequence(node, "freezes")
        if items is None:
            return None
        result = []
        names: set[str] = set()
        for item in items:
            freeze = self._freeze(item)
            if freeze is None:
                continue
            if freeze.name in names:
                self.error(item, f"freezes: duplicate freeze name '{freeze.name}'")
                continue
            names.add(freeze.name)
            result.append(freeze)
        return result

    def _freeze(self, node: yaml.Node) -> Freeze | None:
        fields = self.mapping(node, "freeze", FREEZE_KEYS, ("name", "timezone"))
        if fields is None:
            return None
        name = self.string(fields.get("name"), "freeze name", max_length=80)
        where = f"freeze '{name}'"
        tz_name = self.string(fields.get("timezone"), f"{where} timezone")
        zone = None
        if tz_name is not None:
            try:
                zone = zoneinfo.ZoneInfo(tz_name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.error(
                    fields["timezone"], f"{where} timezone '{tz_name}' is not a known time zone"
                )
        tiers = self.each(
            fields,
            "tiers",
            lambda n: self.strings(
                n, f"{where} tiers", re.compile("write|delete"), "write or delete"
            ),
            [("write", None), ("delete", None)],
        )
        has_range = "start" in fields or "end" in fields
        if has_range == ("recurring" in fields):
            self.error(node, f"{where} needs either start and end, or recurring")
            return None
        if name is None or zone is None:
            return None
        tier_names: tuple[TierName, ...] = tuple(v for v, _ in tiers)  # type: ignore[misc]
        if has_range:
            start = self._instant(fields.get("start"), f"{where} start", zone)
            end = self._instant(fields.get("end"), f"{where} end", zone)
            if start is None or end is None:
                return None
            if end <= start:
                self.error(fields["end"], f"{where} end must be after its start")
                return None
            return Freeze(name=name, tiers=tier_names, timezone=tz_name or "", start=start, end=end)
        recurring = self.mapping(
            fields["recurring"], f"{where} recurring", RECURRING_KEYS, ("days", "start", "end")
        )
        if recurring is None:
            return None
        days = self.strings(
            recurring.get("days"),
            f"{where} recurring.days",
            re.compile("|".join(DAYS)),
            "mon, tue, wed, thu, fri, sat or sun",
        )
        start_time = self._time(recurring.get("start"), f"{where} recurring.start")
        if start_time is not None and start_time[0] is None:
            self.error(recurring["start"], f"{where} recurring.start must be 00:00 to 23:59")
            start_time = None
        end_time = self._time(recurring.get("end"), f"{where} recurring.end")
        if days is None or start_time is None or end_time is None:
            return None
        return Freeze(
            name=name,
            tiers=tier_names,
            timezone=tz_name or "",
            days=tuple(sorted(DAYS.index(d) for d, _ in days)),
            start_time=start_time[0],
            end_time=end_time[0],
        )

    def _instant(self, node: yaml.Node | None, what: str, zone: dt.tzinfo) -> dt.datetime | None:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":timestamp"):
            value = self.scalar(node)
        elif isinstance(node, yaml.ScalarNode) and node.tag.endswith(":str"):
            try:
                value = dt.datetime.fromisoformat(node.value)
            except ValueError:
                value = None
        else:
            value = None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            value = dt.datetime.combine(value, dt.time())
        if not isinstance(value, dt.datetime):
            self.error(node, f"{what} must be a date and time such as 2026-12-20T00:00")
            return None
        return value if value.tzinfo else value.replace(tzinfo=zone)

    def _time(self, node: yaml.Node | None, what: str) -> tuple[dt.time | None] | None:
        """A time of day 'HH:MM'; '24:00' (end of day) is returned as (None,)."""
        # YAML 1.1 reads unquoted 18:00 as a base-60 integer; accept it and say nothing.
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":int") and ":" in node.value:
            text = node.value
        else:
            text = self.string(node, what, TIME_OF_DAY, "HH:MM, 00:00 to 24:00")
        if text is None:
            return None
        if not TIME_OF_DAY.fullmatch(text):
            self.error(node, f"{what} must be HH:MM, 00:00 to 24:00")
            return None
        if text == "24:00":
            return (None,)
        hours, minutes = text.split(":")
        return (dt.time(int(hours), int(minutes)),)

    # -- shared -----------------------------------------------------------------------

    def _check_placeholders(
        self, value: str, node: yaml.Node, what: str, allowed: tuple[str, ...] = PLACEHOLDERS
    ) -> None:
        for name in placeholders_in(value):
            if name not in allowed:
                known = ", ".join("${" + p + "}" for p in allowed)
                self.error(node, f"{what}: unknown placeholder '${{{name}}}' (known: {known})")
        if "$" in value.replace("${", ""):
            self.error(node, f"{what}: stray '$' (placeholders are written ${{name}})")
