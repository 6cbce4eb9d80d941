"""Is the change set the agent described the one AWS holds?

A change set intent grants ``ExecuteChangeSet`` for a change set's name, and what that
executes is what AWS holds, not what the agent wrote. So before issuing, the broker reads
the change set back with the read tier (:func:`broker.intent.impact_aws.describe_change_set`)
and requires the same canonical form, hence the same hash the approvers saw.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from broker.intent.errors import InvalidIntent
from broker.intent.model import AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.policy.iam_actions import IamDatabase


def same_change_set(
    intent: Intent, described: Mapping[str, Any], target: AwsTarget, iam: IamDatabase
) -> None:
    """Refuse (400) unless ``described`` (AWS's DescribeChangeSet) reduces to ``intent``."""
    # boto3 gives datetimes where the JSON API gives strings: compare as JSON.
    as_json = json.loads(json.dumps(dict(described), default=str))
    try:
        actual = parse_intent({"cloudformation_change_set": as_json}, "aws", iam, target)
    except InvalidIntent as e:
        raise InvalidIntent(
            f"the change set AWS holds cannot be executed as described: {e.message}",
            "intent.cloudformation_change_set",
        ) from None
    if actual.sha256 != intent.sha256:
        raise InvalidIntent(
            "the change set AWS holds is not the one this intent describes (hash "
            f"{actual.sha256[:16]}..., not {intent.sha256[:16]}...): describe it again",
            "intent.cloudformation_change_set",
        )
