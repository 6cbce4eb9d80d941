"""Where the stand-in meets moto: the one module that knows moto's internals.

:func:`install` replaces moto's authorization step (``ActionAuthenticatorMixin.
_authenticate_and_authorize_action``, the single place every moto service calls before
acting) with one that keeps moto's own signature check and caller lookup, then decides
with :mod:`broker.devstack.standin.evaluation` on every (action, resource) pair the call
needs. It also records, at AssumeRole, what moto forgets (SourceIdentity, session tags, the
issue time, managed session policies), refuses what AWS refuses there (a session policy
over 2,048 characters), refuses expired sessions, and enforces IAM's inline policy size
quotas. Written against moto 5.2 (pyproject pins the range); tests/devstack/test_standin.py
fails if these hooks stop being called.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from broker.devstack.standin.calls import Call, Check, checks_for
from broker.devstack.standin.evaluation import Decision, Policy, evaluate
from broker.devstack.standin.moto_sessions import (
    MANAGED_POLICY_MAX_CHARS,
    ROLE_INLINE_MAX_CHARS,
    SESSIONS,
    USER_INLINE_MAX_CHARS,
    SessionFacts,
    check_size,
    flat,
    moto_role,
    recording_assume_role,
    size_checked,
    tags_of,
)
from broker.devstack.standin.statements import Principal, Request

log = logging.getLogger("broker.standin")

_installed = False


def install(clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
    """Patch moto (once per process) so that it authorizes like AWS."""
    global _installed
    if _installed:
        return
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.models import IAMBackend
    from moto.sts.responses import TokenResponse

    patches = {
        (ActionAuthenticatorMixin, "_authenticate_and_authorize_action"): _authorizer(clock),
        (TokenResponse, "assume_role"): recording_assume_role(TokenResponse.assume_role, clock),
        (IAMBackend, "put_role_policy"): size_checked(
            IAMBackend.put_role_policy, "role", ROLE_INLINE_MAX_CHARS
        ),
        (IAMBackend, "put_user_policy"): size_checked(
            IAMBackend.put_user_policy, "user", USER_INLINE_MAX_CHARS
        ),
    }
    original_create_policy = IAMBackend.create_policy

    def create_policy(self: Any, *args: Any, **kwargs: Any) -> Any:
        document = kwargs.get("policy_document", args[2] if len(args) > 2 else "")
        check_size(str(document), MANAGED_POLICY_MAX_CHARS, "managed policy")
        return original_create_policy(self, *args, **kwargs)

    patches[(IAMBackend, "create_policy")] = create_policy
    for (owner, name), replacement in patches.items():
        setattr(owner, name, replacement)
    _installed = True


# -- errors, in AWS's shapes ------------------------------------------------------------


def _http_error(code: str, message: str, status: int, json_protocol: bool) -> Exception:
    """An error moto's server renders in AWS's shape (XML, or JSON for JSON protocols)."""
    from moto.core.exceptions import AccessDeniedError, JsonRESTError

    error: AccessDeniedError | JsonRESTError
    if json_protocol:
        error = JsonRESTError(code, message)
    else:
        error = AccessDeniedError("", "")
        super(AccessDeniedError, error).__init__(code, message)  # AWS's code and message
    error.code = status
    return error


# -- the authorization step -------------------------------------------------------------


def _authorizer(clock: Callable[[], dt.datetime]) -> Any:
    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
            ActionAuthenticatorMixin.request_count += 1
            return
        if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
            return
        query = urlparse(self.uri).query
        iam_request = iam_request_cls(
            account_id=self.current_account,
            method=self.method,
            path=self.raw_path + ("?" + query if query else ""),
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        iam_request.check_signature()
        now = clock()
        caller = _caller(iam_request, now)
        call = _call(self, iam_request, resource)
        if call.service == "sts" and call.operation == "GetCallerIdentity":
            return  # AWS needs no permission for it
        for check in checks_for(call, _MotoDirectory()):
            decision = _decide(caller, call, check, now)
            if decision.allowed:
                log.debug(
                    "ALLOW %s on %s by %s (%s)",
                    check.action,
                    check.resource,
                    caller.principal.arn,
                    decision.decided_by,
                )
                continue
            log.info(
                "DENY %s on %s by %s %s%s",
                check.action,
                check.resource,
                caller.principal.arn,
                decision.reason,
                f" ({decision.decided_by})" if decision.decided_by else "",
            )
            _deny(iam_request, caller, check, decision)

    return authorize


@dataclass(frozen=True)
class _Caller:
    principal: Principal
    identity: list[Policy]
    session: list[Policy]
    context: dict[str, list[str]]


def _caller(iam_request: Any, now: dt.datetime) -> _Caller:
    from moto.iam.access_control import AssumedRoleAccessKey, IAMPolicy
    from moto.sts.models import sts_backends

    key = iam_request._access_key
    backend = key.backend
    documents = [IAMPolicy(p)._policy_json for p in key.collect_policies()]
    identity = [Policy("identity", f"identity policy {i + 1}", d) for i, d in enumerate(documents)]
    context: dict[str, list[str]] = {
        "aws:CurrentTime": [now.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:EpochTime": [str(int(now.timestamp()))],
        "aws:PrincipalAccount": [key.account_id],
        "aws:RequestedRegion": [iam_request._region],
        "aws:SourceIp": ["127.0.0.1"],
    }
    if not isinstance(key, AssumedRoleAccessKey):
        user = backend.get_user(key._owner_user_name)
        context.update(
            {
                "aws:PrincipalArn": [user.arn],
                "aws:PrincipalType": ["User"],
                "aws:username": [user.name],
                "aws:userid": [user.id],
            }
        )
        return _Caller(Principal(user.arn, key.account_id), identity, [], context)

    session = next(
        s
        for s in sts_backends[key.account_id][key.partition].assumed_roles
        if s.access_key_id == key._access_key_id
    )
    if session.expiration.replace(tzinfo=dt.UTC) <= now.astimezone(dt.UTC):
        raise _http_error(
            "ExpiredToken",
            "The security token included in the request is expired",
            400,
            _json_protocol(iam_request._headers),
        )
    facts = SESSIONS.get(key._access_key_id) or SessionFacts(issued_at=now.replace(microsecond=0))
    try:
        role = backend.get_role_by_arn(session.role_arn)
        tags = {t["Key"]: t["Value"] for t in role.tags or []}
        role_id = role.id
    except Exception:  # noqa: BLE001 - a deleted role: no policies, no tags
        tags, role_id = {}, "AROADELETEDROLE"
    tags.update(facts.tags)
    session_policies = []
    if session.policy:
        session_policies.append(Policy("session", "session policy", json.loads(session.policy)))
    for arn in facts.policy_arns:
        try:
            managed = backend.get_policy(arn)
        except Exception:  # noqa: BLE001 - AWS refuses at AssumeRole; here it grants nothing
            session_policies.append(Policy("session", arn, {"Statement": []}))
            continue
        session_policies.append(Policy("session", arn, IAMPolicy(managed)._policy_json))
    context.update(
        {
            "aws:PrincipalArn": [session.role_arn],
            "aws:PrincipalType": ["AssumedRole"],
            "aws:userid": [f"{role_id}:{session.session_name}"],
            "aws:TokenIssueTime": [facts.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")],
        }
    )
    if facts.source_identity:
        context["aws:SourceIdentity"] = [facts.source_identity]
    for tag, value in tags.items():
        context[f"aws:PrincipalTag/{tag}"] = [value]
    principal = Principal(session.arn, key.account_id, session.role_arn)
    return _Caller(principal, identity, session_policies, context)


def _call(response: Any, iam_request: Any, resource: str) -> Call:
    service = iam_request._service
    operation = iam_request._action.split(":", 1)[1]
    headers = {str(k): str(v) for k, v in response.headers.items()}
    if service == "s3":
        delete_keys: tuple[str, ...] = ()
        query = getattr(response, "querystring", {}) or {}
        if response.method == "POST" and "delete" in query:
            body = response.raw_body or b""
            text = body.decode() if isinstance(body, bytes) else str(body)
            delete_keys = tuple(re.findall(r"<Key>(.*?)</Key>", text, re.DOTALL))
        return Call(
            "s3",
            operation,
            iam_request._region,
            iam_request.account_id,
            flat(query),
            resource,
            headers,
            delete_keys,
        )
    params: Mapping[str, Any]
    if _json_protocol(response.headers):
        params = _json_body(response)
    else:
        params = flat(response.querystring)
    if service == "sts" and resource != "*":
        params = {**params, "RoleArn": resource}
    return Call(
        service, operation, iam_request._region, iam_request.account_id, params, headers=headers
    )


def _json_body(response: Any) -> Mapping[str, Any]:
    body = response.body
    if isinstance(body, Mapping):  # some moto services parse it before authorizing
        return body
    try:
        parsed = json.loads(response.raw_body or body or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, Mapping) else {}


def _decide(caller: _Caller, call: Call, check: Check, now: dt.datetime) -> Decision:
    context = dict(caller.context)
    if check.action.startswith("s3:"):
        for key in ("prefix", "delimiter", "max-keys"):
            if key in call.params:
                context[f"s3:{key}"] = [str(call.params[key])]
    if check.action.startswith("cloudformation:") and call.params.get("ChangeSetName"):
        # AWS's condition key for the change-set calls: the name as the call gives it (an
        # intent's credential executes its change set by name, docs/intents.md).
        context["cloudformation:ChangeSetName"] = [str(call.params["ChangeSetName"])]
    trust: Policy | None = None
    trust_account: str | None = None
    if check.action in ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"):
        trust, trust_account = _trust_policy(check.resource)
        context.update(_assume_role_keys(call.params))
        if trust is None:
            return Decision("ImplicitlyDenied", "because the role does not exist")
    request = Request(caller.principal, check.action, check.resource, context)
    return evaluate(request, caller.identity, caller.session, trust, trust_account)


def _trust_policy(role_arn: str | None) -> tuple[Policy | None, str | None]:
    role, account = moto_role(role_arn)
    if role is None:
        return None, account
    document = json.loads(role.assume_role_policy_document)
    return Policy("trust", f"trust policy of {role.name}", document), account


def _assume_role_keys(params: Mapping[str, Any]) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    if params.get("SourceIdentity"):
        keys["sts:SourceIdentity"] = [str(params["SourceIdentity"])]
    if params.get("RoleSessionName"):
        keys["sts:RoleSessionName"] = [str(params["RoleSessionName"])]
    if params.get("ExternalId"):
        keys["sts:ExternalId"] = [str(params["ExternalId"])]
    tags = tags_of({str(k): str(v) for k, v in params.items()})
    for tag, value in tags.items():
        keys[f"aws:RequestTag/{tag}"] = [value]
    if tags:
        keys["aws:TagKeys"] = sorted(tags)
    return keys


def _json_protocol(headers: Any) -> bool:
    """JSON-protocol APIs (DynamoDB...) name their operation in X-Amz-Target."""
    return bool(headers.get("X-Amz-Target") or headers.get("x-amz-target"))


def _deny(iam_request: Any, caller: _Caller, check: Check, decision: Decision) -> None:
    if iam_request._service == "s3":
        iam_request._raise_access_denied()  # moto's S3 errors (its multi-delete relies on them)
    message = (
        f"User: {caller.principal.arn} is not authorized to perform: {check.action} "
        f"on resource: {check.resource or '*'} {decision.reason}"
    )
    json_protocol = _json_protocol(iam_request._headers)
    code = "AccessDeniedException" if json_protocol else "AccessDenied"
    raise _http_error(code, message, 403, json_protocol)


class _MotoDirectory:
    """Resource names from moto's state (see calls.Directory)."""

    def stack_arn(self, region: str, account: str, name: str) -> str | None:
        from moto.cloudformation.models import cloudformation_backends

        stacks = cloudformation_backends[account][region].stacks.values()
        for stack in stacks:
            if stack.name == name and stack.status != "DELETE_COMPLETE":
                return str(stack.stack_id)
        return None

    def change_set_stack(self, region: str, account: str, change_set: str) -> str | None:
        from moto.cloudformation.models import cloudformation_backends

        found = cloudformation_backends[account][region].change_sets.get(change_set)
        return str(found.stack_id) if found is not None else None

    def role_arn(self, account: str, name: str) -> str | None:
        from moto.iam.models import iam_backends

        try:
            return str(iam_backends[account]["aws"].get_role(name).arn)
        except Exception:  # noqa: BLE001 - no such role
            return None

    def user_arn(self, account: str, name: str) -> str | None:
        from moto.iam.models import iam_backends

        try:
            return str(iam_backends[account]["aws"].get_user(name).arn)
        except Exception:  # noqa: BLE001 - no such user
            return None
