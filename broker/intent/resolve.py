"""An intent on a credential request, resolved against its scope: the grant and its tier.

Pure. The request intake (:func:`broker.intake.resolve`) calls :func:`resolve_intent` with
the intent as the agent sent it (:class:`RawIntent`) at request time, and with the stored,
already parsed :class:`~broker.intent.model.Intent` at collection: the same checks run
both times, against the scope in force, so a grant the scope no longer allows is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.errors import BadRequest, BlastRadiusExceeded
from broker.intent.classify import IntentSummary, summarize
from broker.intent.compile import IntentGrant, compile_intent
from broker.intent.impact import impact_targets
from broker.intent.model import AwsOperation, AwsTarget, Intent, VaultOperation
from broker.intent.parse import parse_intent
from broker.policy.globs import substitute
from broker.policy.grant import DatabaseGrant, Grant
from broker.policy.iam_actions import IamDatabase
from broker.scopes.model import Backend, Environment, Scope


@dataclass(frozen=True)
class RawIntent:
    """The ``intent`` member as the agent sent it. Never printed: a Terraform plan holds
    sensitive values in clear text, and only the canonical form is ever kept."""

    value: object = field(repr=False, compare=False)


@dataclass(frozen=True)
class RequestIntent:
    """An intent inside its scope: the documents to issue and what approvers are told."""

    intent: Intent
    grant: IntentGrant
    summary: IntentSummary

    @property
    def has_impact(self) -> bool:
        """Whether it destroys something whose extent is worth measuring for approvers."""
        return bool(impact_targets(self.intent))

    def answer(self) -> dict[str, object]:
        """The ``intent`` member of the API's 200/202 answer."""
        return {**self.summary.as_dict(), "tier": self.grant.tier}


def resolve_intent(
    given: RawIntent | Intent,
    backend: Backend,
    scope: Scope,
    env: Environment,
    region: str | None,
    iam: IamDatabase,
) -> RequestIntent:
    """Parse (if raw), check against the scope and compile; refuse what the tier forbids.

    Raises 400 (``invalid_intent``, ``unsupported_resource_type``, ``intent_outside_scope``,
    ``policy_too_large``) or 403 ``blast_radius_exceeded`` (the tier's ``max_destructive``
    or ``max_resources``).
    """
    if isinstance(given, Intent):
        intent = given
        if intent.backend != backend:
            raise BadRequest(f"the intent is for {intent.backend}, not {backend}", "intent")
    else:
        target = AwsTarget(env.aws.account, region) if env.aws and region else None
        intent = parse_intent(given.value, backend, iam, target)
    grant = compile_intent(intent, scope, env, region, iam)
    summary = summarize(intent, env.vault)
    tier = scope.tiers[grant.tier]
    if tier.max_destructive is not None and summary.destructive > tier.max_destructive:
        raise BlastRadiusExceeded(
            f"the intent destroys {summary.destructive} thing(s); tier {grant.tier} of "
            f"{scope.service} allows at most {tier.max_destructive} per intent: split the change"
        )
    named = resources_named(intent)
    if tier.max_resources is not None and len(named) > tier.max_resources:
        raise BlastRadiusExceeded(
            f"the intent names {len(named)} resources; tier {grant.tier} of {scope.service} "
            f"allows at most {tier.max_resources} per request: split the change"
        )
    return RequestIntent(intent, grant, summary)


def intent_grant(
    resolved: RequestIntent, env: Environment, region: str | None, duration_seconds: int
) -> Grant:
    """The request's grant (:mod:`broker.policy.grant`): exactly the intent's documents.

    AWS: the tier role, narrowed by the intent's session policy. Vault: a policy made for
    the request holding only the intent's paths. Database: a role made for the request
    whose logins hold only the intent's table privileges.
    """
    compiled = resolved.grant
    tier = compiled.tier
    if compiled.session_policy is not None:
        assert env.aws is not None and tier in env.aws.roles  # check_scope required both
        role_arn = substitute(env.aws.roles[tier], env.placeholders(region))
        return Grant("aws", tier, duration_seconds, role_arn, compiled.session_policy)
    if compiled.vault_policy is not None:
        return Grant("vault", tier, duration_seconds, vault_policy=compiled.vault_policy)
    role = compiled.database_role
    assert role is not None
    database = DatabaseGrant(
        role.mount, role.db_name, role.creation_statements, role.revocation_statements
    )
    return Grant("database", tier, duration_seconds, database=database)


def resources_named(intent: Intent) -> frozenset[str]:
    """Every distinct resource (ARN, Vault path, table) the intent's operations name."""
    names = set()
    for op in intent.operations:
        if isinstance(op, AwsOperation):
            names.add(op.resource)
        elif isinstance(op, VaultOperation):
            names.add(op.path)
        else:
            names.add(op.table)
    return frozenset(names)
