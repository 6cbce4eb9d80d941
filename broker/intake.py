"""Turn an agent's credential request into a resolved, validated request, or refuse it.

Pure: no I/O. Every refusal names the field at fault (400 for a malformed value, 404 for
a name that does not exist, 403 for what the agent may not ask for).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from broker.errors import (
    BadRequest,
    BlastRadiusExceeded,
    Forbidden,
    NotFound,
    ResourcesRequired,
    ScopeInvalid,
)
from broker.identity.model import AgentIdentity
from broker.identity.requesters import may_request
from broker.intent.errors import IntentRequired
from broker.intent.model import Intent
from broker.intent.resolve import RawIntent, RequestIntent, intent_grant, resolve_intent
from broker.policy.compiler import session_policy
from broker.policy.globs import substitute
from broker.policy.grant import Grant, compile_grant
from broker.policy.iam_actions import IamDatabase
from broker.policy.resources import names_everything, suspicious, vault_path_regex
from broker.scopes.model import (
    BACKENDS,
    TIERS,
    Backend,
    Environment,
    Scope,
    Tier,
    TierName,
)
from broker.scopes.registry import ScopeSet
from broker.suggest import did_you_mean

FIELDS = {
    "service",
    "environment",
    "region",
    "tier",
    "backend",
    "resources",
    "duration",
    "justification",
    "intent",
}
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
MAX_RESOURCES = 100
MAX_JUSTIFICATION = 2000
STS_MIN_SECONDS = 900
VAULT_MIN_SECONDS = 60


@dataclass(frozen=True)
class CredentialRequest:
    """The request body, typed and bounded; not yet checked against any scope."""

    service: str
    environment: str
    region: str | None
    tier: TierName
    backend: Backend
    resources: tuple[str, ...]
    duration: int | None
    justification: str
    # What the agent says it will do (docs/intents.md): as sent, or parsed when stored.
    intent: RawIntent | Intent | None = None

    def audit_fields(self) -> dict[str, Any]:
        """What every audit record about this request names."""
        return {
            "service": self.service,
            "environment": self.environment,
            "tier": self.tier,
            "backend": self.backend,
            "region": self.region,
        }


@dataclass(frozen=True)
class ResolvedRequest:
    """A request checked against its scope: everything an issuer or approver needs."""

    request: CredentialRequest
    scope: Scope
    environment: Environment
    tier: Tier
    duration_seconds: int
    grant: Grant  # exactly the documents issued for it
    intent: RequestIntent | None = None

    @property
    def escalated(self) -> bool:
        return self.request.tier != "read"

    @property
    def session_policy(self) -> Mapping[str, Any] | None:
        return self.grant.session_policy


def parse_request(body: object) -> CredentialRequest:
    """Validate the JSON body's shape and types."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'", unknown[0])
    service = _name(body, "service")
    environment = _name(body, "environment")
    region = body.get("region")
    if region is not None and (not isinstance(region, str) or not NAME.fullmatch(region)):
        raise BadRequest("region must be a region name such as us-east-1", "region")
    tier = body.get("tier")
    if tier not in TIERS:
        raise BadRequest(f"tier must be one of {', '.join(TIERS)}", "tier")
    backend = body.get("backend")
    if backend not in BACKENDS:
        raise BadRequest(f"backend must be one of {', '.join(BACKENDS)}", "backend")
    resources = body.get("resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise BadRequest("resources must be a list of strings", "resources")
    if len(resources) > MAX_RESOURCES:
        raise BadRequest(f"at most {MAX_RESOURCES} resources per request", "resources")
    if len(set(resources)) != len(resources):
        raise BadRequest("resources must not repeat", "resources")
    for resource in resources:
        reason = suspicious(resource)
        if reason:
            raise BadRequest(f"refused {reason}", "resources")
    duration = body.get("duration")
    if duration is not None and (
        not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0
    ):
        raise BadRequest("duration must be a positive number of seconds", "duration")
    justification = body.get("justification", "")
    if not isinstance(justification, str) or len(justification) > MAX_JUSTIFICATION:
        raise BadRequest(
            f"justification must be text of at most {MAX_JUSTIFICATION} characters", "justification"
        )
    intent = body.get("intent")
    if intent is not None and not isinstance(intent, dict):
        raise BadRequest("intent must be an object (docs/intents.md)", "intent")
    if intent is not None and resources:
        raise BadRequest(
            "give resources or an intent, not both: an intent names its resources", "resources"
        )
    return CredentialRequest(
        service=service,
        environment=environment,
        region=region,
        tier=tier,
        backend=backend,
        resources=tuple(resources),
        duration=duration,
        justification=justification,
        intent=None if intent is None else RawIntent(intent),
    )


def _name(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise BadRequest(f"{field} is required: a lower-case name", field)
    return value


def resolve(
    request: CredentialRequest,
    scopes: ScopeSet,
    identity: AgentIdentity,
    iam: IamDatabase,
) -> ResolvedRequest:
    """Check a request against the scopes in force; the result is exactly what is granted."""
    scope = scopes.get(request.service)
    broken = scopes.invalid.get(request.service)
    if scope is None and broken:
        raise ScopeInvalid(request.service, [p.in_file() for p in broken])
    if scope is None:
        # Suggest only among scopes this agent may request: no others are revealed.
        mine = [s.service for s in scopes.scopes.values() if may_request(s, identity)]
        hint = did_you_mean(request.service, mine)
        raise NotFound(f"no scope for service '{request.service}'{hint}", "service")
    if not may_request(scope, identity):
        raise Forbidden(f"agent {identity.principal} may not request scope {scope.service}")
    env = scope.environments.get(request.environment)
    if env is None:
        raise NotFound(
            f"scope {scope.service} has no environment '{request.environment}'", "environment"
        )
    _check_region(request, env)
    intent = None
    if request.intent is not None:
        _check_backend(request, scope, env)
        intent = resolve_intent(request.intent, request.backend, scope, env, request.region, iam)
        # The intent decides the tier (and with it the approval rule), not the agent.
        request = replace(request, tier=intent.grant.tier)
    tier = scope.tiers.get(request.tier)
    if tier is None:
        raise NotFound(f"scope {scope.service} has no tier '{request.tier}'", "tier")
    duration = clamp_duration(request, tier)
    if intent is not None:
        grant = intent_grant(intent, env, request.region, duration)
    else:
        grant = _listed_grant(request, scope, env, tier, iam, duration)
    return ResolvedRequest(
        request=request,
        scope=scope,
        environment=env,
        tier=tier,
        duration_seconds=duration,
        grant=grant,
        intent=intent,
    )


def _listed_grant(
    request: CredentialRequest,
    scope: Scope,
    env: Environment,
    tier: Tier,
    iam: IamDatabase,
    duration: int,
) -> Grant:
    """The grant of a request without an intent: the resources it lists, within the tier."""
    if tier.intent == "required":
        raise IntentRequired(
            f"tier {request.tier} of {scope.service} requires an intent: say what you will "
            "do (a Terraform plan, a change set or operations; docs/intents.md)"
        )
    _check_blast_radius(request, tier)
    policy = None
    if request.backend == "aws":
        if env.aws is None:
            raise BadRequest(
                f"environment {env.name} of {scope.service} has no aws backend", "backend"
            )
        assert request.region is not None
        policy = session_policy(scope, env, request.region, request.tier, iam, request.resources)
    elif request.backend == "vault":
        if env.vault is None:
            raise BadRequest(
                f"environment {env.name} of {scope.service} has no vault backend", "backend"
            )
        _check_vault_paths(request, env)
    else:
        if env.database is None or request.tier not in env.database.roles:
            raise BadRequest(
                f"environment {env.name} of {scope.service} has no database "
                f"role for tier {request.tier}",
                "backend",
            )
        _check_database_objects(request, env)
    return compile_grant(
        scope,
        env,
        request.tier,
        request.backend,
        request.region,
        request.resources,
        duration,
        policy,
    )


def _check_backend(request: CredentialRequest, scope: Scope, env: Environment) -> None:
    """The environment has the request's backend (and, for a database, the tier's role)."""
    present = {"aws": env.aws, "vault": env.vault, "database": env.database}[request.backend]
    if present is None:
        raise BadRequest(
            f"environment {env.name} of {scope.service} has no {request.backend} backend",
            "backend",
        )


def clamp_duration(request: CredentialRequest, tier: Tier) -> int:
    """The lesser of the requested duration and the tier's TTL, at least the backend's floor."""
    duration = min(request.duration or tier.ttl_seconds, tier.ttl_seconds)
    floor = STS_MIN_SECONDS if request.backend == "aws" else VAULT_MIN_SECONDS
    return max(duration, floor)


def _check_region(request: CredentialRequest, env: Environment) -> None:
    allowed = env.aws.regions if env.aws else ()
    if request.region is None:
        if request.backend == "aws":
            raise BadRequest("region is required for the aws backend", "region")
        return
    if request.region not in allowed:
        raise NotFound(
            f"region '{request.region}' is not allowed in environment {env.name}", "region"
        )


def _check_blast_radius(request: CredentialRequest, tier: Tier) -> None:
    """write/delete name their resources: not everything, and no more than the cap."""
    if request.tier == "read":
        return
    for resource in request.resources:
        if request.backend == "aws" and names_everything(resource):
            raise BlastRadiusExceeded(
                f"resource '{resource}' names everything; "
                f"{request.tier} requests must name what they change"
            )
        if request.backend != "aws" and any(c in resource for c in "*?+"):
            # A KV path or a schema.table with a wildcard names every secret or table it
            # matches: write/delete requests name the ones they will change.
            raise BlastRadiusExceeded(
                f"resource '{resource}' is a wildcard: it names everything it matches; "
                f"{request.tier} requests must name each secret or table"
            )
    if tier.max_resources is not None and len(request.resources) > tier.max_resources:
        raise BlastRadiusExceeded(
            f"{len(request.resources)} resources named; tier {request.tier} allows at most "
            f"{tier.max_resources} per request"
        )
    if not request.resources:
        what = {"aws": "resources", "vault": "secrets", "database": "tables"}[request.backend]
        raise ResourcesRequired(
            f"{request.tier} requests for {request.backend} must name the {what} they will "
            "change (the resources field): the credential grants those only"
        )


def _check_vault_paths(request: CredentialRequest, env: Environment) -> None:
    assert env.vault is not None
    values = env.placeholders(request.region)
    patterns = []
    for pattern in env.vault.paths:
        try:
            patterns.append(vault_path_regex(substitute(pattern, values)))
        except KeyError:
            continue
    for resource in request.resources:
        if not any(p.fullmatch(resource) for p in patterns):
            raise BadRequest(
                f"resource '{resource}' is outside the environment's Vault paths", "resources"
            )


def _check_database_objects(request: CredentialRequest, env: Environment) -> None:
    assert env.database is not None
    objects = env.database.objects
    for resource in request.resources:
        schema = resource.split(".", 1)[0]
        if resource not in objects and f"{schema}.*" not in objects:
            raise BadRequest(
                f"resource '{resource}' is not one of the environment's database objects",
                "resources",
            )
