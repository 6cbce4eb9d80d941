"""The audit trail's vocabulary: every action name, what it means, and its outcomes.

One catalogue, so the recorder's callers, `broker audit show` and docs/audit.md agree.
Actions marked *planned* are recorded by features being built (break-glass); their names
are fixed here first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    name: str
    meaning: str
    outcomes: tuple[str, ...]


AUTHENTICATE = "authenticate"
ADMIN = "admin"
REQUEST = "request"
NOTIFY = "notify"
VIEW = "view"
LINK = "link"
SLACK = "slack"
APPROVE = "approve"
DENY = "deny"
COLLECT = "collect"
LOOKUP = "lookup"
SIGN_IN = "sign_in"
ISSUE = "issue"
REVOKE = "revoke"
FREEZE = "freeze"
UNFREEZE = "unfreeze"
BREAKER_TRIP = "breaker_trip"
BREAK_GLASS = "break_glass"
SCOPE_RELOAD = "scope_reload"
SCOPE_APPLY = "scope_apply"
RECONCILE = "reconcile"

CATALOGUE: tuple[Action, ...] = (
    Action(AUTHENTICATE, "a caller's token was refused", ("denied",)),
    Action(ADMIN, "a caller who is not an admin used an admin endpoint", ("denied",)),
    Action(
        REQUEST,
        "a credential request and each change of its state",
        ("denied", "pending", "approved", "expired", "cancelled"),
    ),
    Action(NOTIFY, "approvers were told about a request (or could not be)", ("sent", "failed")),
    Action(
        VIEW,
        "an approver opened a request's approval page (refused: not one of its approvers, "
        "or a delete's link without its approver signed in)",
        ("viewed", "refused"),
    ),
    Action(
        LINK,
        "a personal approval link was minted by an operator or sent to an approver in Slack",
        ("minted", "sent"),
    ),
    Action(
        SLACK,
        "a Slack interaction was refused (bad signature, replay, not an approver)",
        ("refused",),
    ),
    Action(APPROVE, "an approver approved (or was refused)", ("recorded", "refused")),
    Action(DENY, "an approver denied (or was refused)", ("recorded", "refused")),
    Action(COLLECT, "the agent collected approved credentials", ("collected", "refused")),
    Action(
        LOOKUP,
        "an agent named a request id that is not its own (another agent's, or none): "
        "answered as unknown",
        ("refused",),
    ),
    Action(
        SIGN_IN,
        "an approver signed in through the OIDC provider (or was refused), or signed out",
        ("signed_in", "refused", "signed_out"),
    ),
    Action(
        ISSUE,
        "credentials were issued upstream, served from the cache, or failed; withdrawn: "
        "revoked as soon as minted, never handed out (the kill switch reached it in flight, "
        "or its record could not be written)",
        ("issued", "cached", "failed", "withdrawn"),
    ),
    Action(
        REVOKE,
        "the kill switch revoked what a target was issued (complete, or partial when a "
        "backend could not be reached); per credential: revoked or failed",
        ("complete", "partial", "revoked", "failed"),
    ),
    Action(FREEZE, "the kill switch froze an agent, a scope or everything", ("frozen",)),
    Action(UNFREEZE, "an operator lifted a freeze (or found none)", ("lifted", "nothing")),
    Action(BREAKER_TRIP, "the circuit breaker froze an agent", ("frozen",)),
    Action(
        BREAK_GLASS,
        "an emergency request bypassed the normal approval rule (planned)",
        ("requested", "issued", "refused"),
    ),
    Action(
        "audit_anchor",
        "the audit chain's head could not be written to its outside anchor (the next "
        "anchor covers what this one would have)",
        ("failed",),
    ),
    Action(
        SCOPE_RELOAD,
        "the scope files were reloaded (partial: some files have problems; the scopes of "
        "those files are not served)",
        ("applied", "partial"),
    ),
    Action(
        RECONCILE,
        "the reconciler revoked a credential minted under a record never completed (a "
        "replica died or its store failed mid-issuance), or deleted a request's own Vault "
        "policy or database role once its credential ended; or could not",
        ("revoked", "cleaned", "failed"),
    ),
    Action(
        SCOPE_APPLY,
        "a scope change was applied by `broker scopes apply` (planned)",
        (
            "applied",
            "refused",
        ),
    ),
)
BY_NAME = {action.name: action for action in CATALOGUE}

# How a record reads in a request's timeline (`broker audit show`), by (action, outcome).
VERBS: dict[tuple[str, str], str] = {
    (REQUEST, "pending"): "requested",
    (REQUEST, "denied"): "refused",
    (REQUEST, "approved"): "approved",
    (REQUEST, "expired"): "expired",
    (REQUEST, "cancelled"): "cancelled",
    (NOTIFY, "sent"): "notified",
    (NOTIFY, "failed"): "notify failed",
    (VIEW, "viewed"): "viewed",
    (VIEW, "refused"): "view refused",
    (LINK, "minted"): "link minted",
    (LINK, "sent"): "link sent",
    (SLACK, "refused"): "slack refused",
    (APPROVE, "recorded"): "approval",
    (APPROVE, "refused"): "approval refused",
    (DENY, "recorded"): "denial",
    (DENY, "refused"): "denial refused",
    (COLLECT, "collected"): "collected",
    (COLLECT, "refused"): "collect refused",
    (LOOKUP, "refused"): "lookup refused",
    (ISSUE, "issued"): "issued",
    (ISSUE, "cached"): "issued (cache)",
    (ISSUE, "failed"): "issue failed",
    (ISSUE, "withdrawn"): "withdrawn",
    (RECONCILE, "revoked"): "orphan revoked",
    (REVOKE, "revoked"): "revoked",
    (REVOKE, "failed"): "revoke failed",
    (REVOKE, "complete"): "kill switch",
    (REVOKE, "partial"): "kill switch (partial)",
    (BREAK_GLASS, "requested"): "break-glass",
}


def verb(action: str, outcome: str) -> str:
    """A short past-tense label for a record: 'approval', 'issued (cache)', 'revoked'."""
    return VERBS.get((action, outcome), f"{action} {outcome}".replace("_", " "))
