"""What `broker dev` prints once the stack is up: where everything is, and requests to copy
for the demo agent, made from the scopes actually loaded (not a fixed example). Pure."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.guard.freeze_list import WindowInForce, list_freezes
from broker.identity.model import AgentIdentity
from broker.identity.requesters import may_request
from broker.policy.globs import substitute
from broker.scopes.model import Environment, Scope
from broker.scopes.registry import ScopeSet

DEMO_KV_LEAF = "demo"  # the KV secret `broker dev` seeds under each path pattern


@dataclass(frozen=True)
class DemoRequests:
    """Bodies for POST /v1/credentials the demo agent may send, and who can approve."""

    read: dict[str, Any]
    write: dict[str, Any] | None
    approver: str | None


def demo_scope(scope_set: ScopeSet, agent: str) -> Scope | None:
    """The first scope (by name) that admits ``agent:<agent>``."""
    identity = AgentIdentity(subject=f"agent:{agent}", issuer="local", claims={})
    for name in sorted(scope_set.scopes):
        if may_request(scope_set.scopes[name], identity):
            return scope_set.scopes[name]
    return None


def _environment(scope: Scope) -> Environment:
    return scope.environments.get("prod") or scope.environments[sorted(scope.environments)[0]]


def narrower(pattern: str) -> str:
    """An example inside an AWS resource pattern: objects under a demo prefix of an S3
    pattern, a demo name for the other wildcards (a trailing '/*', such as a stack's id,
    stays)."""
    if pattern.startswith("arn:aws:s3:::") and pattern.endswith("/*"):
        return pattern[:-1] + "2026/*"
    head, tail = (pattern[:-2], "/*") if pattern.endswith("/*") else (pattern, "")
    return head.replace("*", "demo") + tail


def demo_requests(
    scope: Scope, approvers_for: Callable[[tuple[str, ...], tuple[str, ...]], Iterable[str]]
) -> DemoRequests:
    env = _environment(scope)
    base: dict[str, Any] = {"service": scope.service, "environment": env.name}
    write_tier = scope.tiers.get("write")
    write: dict[str, Any] | None = None
    if env.aws is not None:
        region = env.aws.regions[0]
        base.update({"region": region, "backend": "aws"})
        statements = write_tier.aws if write_tier is not None else ()
        if statements and statements[0].resources:
            resource = substitute(statements[0].resources[0], env.placeholders(region))
            write = {**base, "tier": "write", "resources": [narrower(resource)]}
    elif env.vault is not None:
        base["backend"] = "vault"
        if write_tier is not None:
            path = substitute(env.vault.paths[0], env.placeholders(None))
            write = {**base, "tier": "write", "resources": [path.replace("*", DEMO_KV_LEAF)]}
    else:
        base["backend"] = "database"
    approver = None
    if write is not None and write_tier is not None and write_tier.approval is not None:
        rule = write_tier.approval
        eligible = sorted(approvers_for(rule.named_approvers, rule.named_groups))
        approver = eligible[0] if eligible else None
        write["justification"] = "a change the demo agent was asked to make"
    return DemoRequests({**base, "tier": "read"}, write, approver)


def windows_in_force(scope_set: ScopeSet, now: float) -> tuple[WindowInForce, ...]:
    """The scopes' change-freeze windows in force at ``now`` (the example scopes have some)."""
    return list_freezes((), scope_set.scopes.values(), now).windows


@dataclass(frozen=True)
class Endpoints:
    broker: str
    openbao: str
    aws: str
    aws_log: Path
    database: str | None
    config: Path


def render(
    endpoints: Endpoints,
    agent: str,
    token: str,
    demo: DemoRequests | None,
    windows: Sequence[WindowInForce] = (),
) -> str:
    state = endpoints.config.parent
    lines = [
        "",
        "Broker dev stack is up (Ctrl-C stops everything).",
        f"  broker      {endpoints.broker}   (SQLite and keys in {state})",
        f"  OpenBao     {endpoints.openbao}",
        f"  AWS         {endpoints.aws}   (moto, evaluating IAM like AWS: docs/local-stack.md)",
        f"              decisions: {endpoints.aws_log}",
        f"  PostgreSQL  {endpoints.database or 'not reachable: database backend unavailable'}",
        f"  config      {endpoints.config}",
        f"  operator    source {state / 'env'}   (for broker revoke, freezes, audit...)",
        "  alerts      shown here as they happen (kill switch, circuit breaker)",
        "",
        f"Demo agent agent:{agent} (token valid 8h):",
        f"BROKER_URL={endpoints.broker}",
        f"BROKER_TOKEN={token}",
    ]
    if windows:
        lines += [
            "",
            "Change freezes of the scopes in force now (403 change_freeze; `broker freezes`):",
        ]
        lines += [f"  {w.service}: {w.window} stops {', '.join(w.tiers)} requests" for w in windows]
    if demo is None:
        lines += ["", f"(agent:{agent} may request no scope: add it to a scope's requesters.)"]
        return "\n".join(lines) + "\n"
    post = (
        '  curl -s -H "Authorization: Bearer $BROKER_TOKEN" '
        "-H 'Content-Type: application/json' \\"
    )
    lines += [
        "",
        f"Read credentials for {demo.read['service']}/{demo.read['environment']}, granted at once:",
        post,
        f"    -d '{json.dumps(demo.read)}' $BROKER_URL/v1/credentials",
    ]
    if demo.write is not None:
        lines += [
            "",
            "A write waits for a human; approve it through a personal link:",
            post,
            f"    -d '{json.dumps(demo.write)}' $BROKER_URL/v1/credentials",
            f"  broker approvals link --config {endpoints.config} "
            f"--approver {demo.approver or '<approver>'} --request <request_id>",
            "  # open the printed link, approve, then collect:",
            '  curl -s -X POST -H "Authorization: Bearer $BROKER_TOKEN" \\',
            "    $BROKER_URL/v1/requests/<request_id>/credentials",
        ]
    return "\n".join(lines) + "\n"
