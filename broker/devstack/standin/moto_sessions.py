"""What AWS keeps and checks around a session, that moto does not (used by moto_hooks).

At AssumeRole: the session's SourceIdentity, tags, managed session policies and issue time
(``aws:TokenIssueTime`` carries whole seconds, as CloudTrail's ``creationDate`` shows), a
session policy over 2,048 characters refused, a duration over the role's
MaxSessionDuration refused. In IAM: inline policy size quotas (10,240 characters per role,
2,048 per user, 6,144 per managed policy, white space not counted).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SESSION_POLICY_MAX_CHARS = 2048
# IAM's quotas on inline policies, counted without white space.
ROLE_INLINE_MAX_CHARS = 10240
USER_INLINE_MAX_CHARS = 2048
MANAGED_POLICY_MAX_CHARS = 6144
_WHITESPACE = re.compile(r"\s+")


@dataclass
class SessionFacts:
    """What AWS keeps about a role session and moto does not."""

    issued_at: dt.datetime  # whole seconds, as aws:TokenIssueTime carries it
    source_identity: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    policy_arns: list[str] = field(default_factory=list)


class SessionRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._facts: dict[str, SessionFacts] = {}

    def record(self, access_key_id: str, facts: SessionFacts) -> None:
        with self._lock:
            self._facts[access_key_id] = facts

    def get(self, access_key_id: str) -> SessionFacts | None:
        with self._lock:
            return self._facts.get(access_key_id)


SESSIONS = SessionRegistry()


def check_size(document: str, limit: int, what: str) -> None:
    size = len(_WHITESPACE.sub("", document))
    if size > limit:
        from moto.iam.exceptions import LimitExceededException

        raise LimitExceededException(f"Maximum policy size of {limit} bytes exceeded for {what}")


def size_checked(original: Any, kind: str, limit: int) -> Any:
    def put(self: Any, name: str, policy_name: str, policy_json: str) -> Any:
        owner = self.get_role(name) if kind == "role" else self.get_user(name)
        others = [d for n, d in owner.policies.items() if n != policy_name]
        check_size("".join([*others, policy_json]), limit, f"{kind} {name}")
        return original(self, name, policy_name, policy_json)

    return put


def recording_assume_role(original: Any, clock: Callable[[], dt.datetime]) -> Any:
    def assume_role(self: Any) -> Any:
        params = flat(self.querystring)
        policy = params.get("Policy")
        if policy is not None and len(policy) > SESSION_POLICY_MAX_CHARS:
            raise _sts_validation(
                "1 validation error detected: Value at 'policy' failed to satisfy "
                f"constraint: Member must have length less than or equal to "
                f"{SESSION_POLICY_MAX_CHARS}"
            )
        _check_duration(params)
        result = original(self)
        role = result.result["Credentials"]
        SESSIONS.record(
            role.access_key_id,
            SessionFacts(
                issued_at=clock().replace(microsecond=0),
                source_identity=params.get("SourceIdentity"),
                tags=tags_of(params),
                policy_arns=[v for k, v in sorted(params.items()) if k.startswith("PolicyArns.")],
            ),
        )
        return result

    return assume_role


def _check_duration(params: Mapping[str, str]) -> None:
    """AWS refuses a session longer than the role's MaxSessionDuration."""
    role, _ = moto_role(params.get("RoleArn"))
    if role is None:
        return
    limit = int(role.max_session_duration or 3600)
    if int(params.get("DurationSeconds", "3600")) > limit:
        raise _sts_validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
        )


def _sts_validation(message: str) -> Exception:
    from moto.sts.exceptions import STSValidationError

    return STSValidationError(message)


def flat(querystring: Mapping[str, Any]) -> dict[str, str]:
    flat = {}
    for key, value in querystring.items():
        if isinstance(value, list):
            if value:
                flat[key] = str(value[0])
        elif value is not None:
            flat[key] = str(value)
    return flat


def tags_of(params: Mapping[str, str]) -> dict[str, str]:
    tags = {}
    for key, value in params.items():
        match = re.fullmatch(r"Tags\.member\.(\d+)\.Key", key)
        if match:
            tags[value] = params.get(f"Tags.member.{match.group(1)}.Value", "")
    return tags


def moto_role(role_arn: str | None) -> tuple[Any, str | None]:
    """moto's role object for an ARN (None when there is no such role), and its account."""
    from moto.iam.models import iam_backends

    parts = (role_arn or "").split(":")
    if len(parts) < 6:
        return None, None
    try:
        return iam_backends[parts[4]]["aws"].get_role_by_arn(str(role_arn)), parts[4]
    except Exception:  # noqa: BLE001 - no such role
        return None, parts[4]
