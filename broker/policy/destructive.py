"""Which IAM actions destroy things, and so belong in the ``delete`` tier only.

IAM classifies DeleteBucket, DeleteStack, DeleteDBInstance and DeleteTable as plain
"Write", the same level as PutObject, so the access level alone cannot tell "write" from
"delete". The broker's rule: an action is destructive when its verb is one of
DESTRUCTIVE_VERBS (optionally behind "Batch"), or when it is in DESTRUCTIVE_ACTIONS, a
reviewed list of actions that destroy data or make later destruction irreversible without
such a verb. docs/scopes.md reproduces both lists; extend them here, with a reason.
"""

from __future__ import annotations

import re

DESTRUCTIVE_VERBS = ("Delete", "Terminate", "Remove", "Drop", "Purge", "Destroy", "Erase")

_VERB = re.compile(r"^(?:Batch)?(?:" + "|".join(DESTRUCTIVE_VERBS) + r")(?![a-z])")

# Destructive without a destructive verb. Keys are lower-case "service:action".
DESTRUCTIVE_ACTIONS: dict[str, str] = {
    "s3:putlifecycleconfiguration": "an expiration rule deletes every object it matches",
    "s3:putbucketversioning": "suspending versioning makes later deletions permanent",
    "s3:putobjectretention": "shortening retention lets locked objects be deleted",
    "s3:bypassgovernanceretention": "deletes objects under governance-mode retention",
    "kms:schedulekeydeletion": "deleting an encryption key makes its data unreadable",
    "kms:disablekey": "disabling an encryption key makes its data unreadable",
    "dynamodb:batchwriteitem": "deletes items as well as writing them",
    "dynamodb:updatecontinuousbackups": "turning off point-in-time recovery loses history",
    "ec2:modifyinstanceattribute": "can turn off termination protection",
    "cloudformation:updateterminationprotection": "turning it off precedes DeleteStack",
    "logs:putretentionpolicy": "a short retention purges existing log events",
    "rds:modifydbinstance": "can turn off deletion protection and drop backups",
    "rds:modifydbcluster": "can turn off deletion protection and drop backups",
}


def is_destructive(service: str, action: str) -> bool:
    """True when ``service:action`` destroys data or makes destruction irreversible."""
    if _VERB.match(action):
        return True
    return f"{service}:{action}".lower() in DESTRUCTIVE_ACTIONS


def destructive_reason(service: str, action: str) -> str:
    if _VERB.match(action):
        return "its verb destroys what it names"
    return DESTRUCTIVE_ACTIONS.get(f"{service}:{action}".lower(), "")
