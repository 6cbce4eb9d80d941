"""A change set is read back from AWS right before its credential is issued.

A change-set intent grants ``ExecuteChangeSet`` for one change set *name*, and what that
executes is whatever AWS holds under the name at that moment, not what the agent
described or approvers saw. Someone could delete the change set and create another under
the same name after approval. So, before anything is issued, the broker describes the
change set with the read tier (:mod:`broker.approvals.read_access`) and requires that it
reduces to the same canonical intent, hence the same SHA-256 the approvers approved.
Nothing is issued when AWS cannot be asked (503) or holds another change set (400).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.approvals.read_access import ReadAccess
from broker.identity.model import AgentIdentity
from broker.intake import ResolvedRequest
from broker.intent.impact_aws import describe_change_set
from broker.intent.model import AwsTarget
from broker.intent.verify import same_change_set
from broker.policy.iam_actions import IamDatabase


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class ChangeSetCheck:
    reads: ReadAccess
    iam: IamDatabase

    def verify(self, identity: AgentIdentity, resolved: ResolvedRequest) -> None:
        """Refuse unless a change-set intent still describes what AWS holds (no-op for
        other requests)."""
        intent = resolved.intent.intent if resolved.intent else None
        if intent is None or intent.kind != "cloudformation_change_set":
            return
        env = resolved.environment
        assert env.aws is not None and resolved.request.region is not None  # intake checked
        change_set_id = intent.source_value("change_set_id") or ""
        # By name and stack, as ExecuteChangeSet will name it: whatever holds the name now.
        stack = intent.source_value("stack_id") or ""
        described = describe_change_set(self.reads.aws(identity, resolved), change_set_id, stack)
        same_change_set(
            intent, described, AwsTarget(env.aws.account, resolved.request.region), self.iam
        )
