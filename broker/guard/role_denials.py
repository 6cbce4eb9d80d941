"""Write a deny onto a tier role's revocation policy: serialized, read back, never too large.

IAM has no compare-and-set on a role policy: two revocations that each read, merge and put
the document at once would each drop the other's statement, and both report "revoked". So
the read-merge-put runs under a lock of the shared store (one per role, on every replica),
and the statement is read back after the put (IAM is eventually consistent: a read may lag,
then the merge is put again, which changes nothing when it had landed). The merge itself,
with its size budget, is :func:`broker.guard.revocation_policy.merge`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from broker.errors import UpstreamUnavailable
from broker.guard.revocation_policy import (
    REVOCATION_POLICY_NAME,
    ROLE_INLINE_MAX_CHARS,
    Compacted,
    Denial,
    DoesNotFit,
    merge,
    present,
    size,
)
from broker.issuers.aws_accounts import AwsAccounts
from broker.store.base import LockStore

READ_BACK_ATTEMPTS = 5


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class RoleDenials:
    accounts: AwsAccounts
    locks: LockStore
    sleep: Callable[[float], None] = time.sleep

    def deny(self, role_arn: str, denial: Denial, now: float) -> Compacted:
        """Add ``denial`` to the role's revocation policy; return what was written.

        Raises botocore's errors, :class:`UpstreamUnavailable` when the statement cannot be
        read back, and for a policy that cannot fit (the caller reports the role unreached).
        """
        account, name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[1]
        iam = self.accounts.iam(account)
        with self.locks.exclusive(f"revocation-policy:{role_arn}"):
            for attempt in range(READ_BACK_ATTEMPTS):
                budget = ROLE_INLINE_MAX_CHARS - _others_size(iam, name)
                try:
                    compacted = merge(inline_policy(iam, name), denial, now, budget)
                except DoesNotFit as e:
                    raise UpstreamUnavailable(str(e), "aws") from e
                iam.put_role_policy(
                    RoleName=name,
                    PolicyName=REVOCATION_POLICY_NAME,
                    PolicyDocument=json.dumps(compacted.document, separators=(",", ":")),
                )
                if present(inline_policy(iam, name), denial):
                    return compacted
                self.sleep(0.2 * (attempt + 1))
        raise UpstreamUnavailable(
            "the deny statement was written but could not be read back", "aws"
        )


def inline_policy(
    iam: Any, role: str, policy: str = REVOCATION_POLICY_NAME
) -> dict[str, Any] | None:
    try:
        answer = iam.get_role_policy(RoleName=role, PolicyName=policy)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return None
        raise
    body = answer["PolicyDocument"]
    parsed: dict[str, Any] = json.loads(body) if isinstance(body, str) else dict(body)
    return parsed


def _others_size(iam: Any, role: str) -> int:
    """Characters the role's other inline policies use of IAM's per-role budget."""
    names = iam.list_role_policies(RoleName=role).get("PolicyNames", [])
    total = 0
    for name in names:
        if name != REVOCATION_POLICY_NAME:
            total += size(inline_policy(iam, role, name) or {})
    return total
