# The broker's own IAM permissions, and nothing else:
# - assume the tier roles, tag the sessions and set their SourceIdentity;
# - the kill switch: write, read and delete an inline policy (deny sessions issued before
#   now) on the tier roles of its own account, and assume the kill-switch role of each other
#   account to do the same there;
# - the audit anchor (audit.anchor in broker.yaml), when a bucket is given: add anchors and
#   read them back. Never delete: the bucket's Object Lock (compliance mode) forbids it anyway.
# The same document, rendered for the example scopes, is deploy/iam/broker-policy.json.

data "aws_iam_policy_document" "broker" {
  statement {
    sid       = "AssumeTierRoles"
    effect    = "Allow"
    actions   = ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]
    resources = var.tier_role_arns
  }

  dynamic "statement" {
    for_each = length(var.own_account_tier_role_arns) > 0 ? [1] : []
    content {
      sid       = "KillSwitchWritesRevocationPolicy"
      effect    = "Allow"
      actions   = ["iam:DeleteRolePolicy", "iam:PutRolePolicy"]
      resources = var.own_account_tier_role_arns

      dynamic "condition" {
        for_each = var.boundary_pattern == null ? [] : [var.boundary_pattern]
        content {
          test     = "StringLike"
          variable = "iam:PermissionsBoundary"
          values   = [condition.value]
        }
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.own_account_tier_role_arns) > 0 ? [1] : []
    content {
      sid       = "KillSwitchReadsRevocationPolicy"
      effect    = "Allow"
      actions   = ["iam:GetRolePolicy"]
      resources = var.own_account_tier_role_arns
    }
  }

  dynamic "statement" {
    for_each = var.audit_anchor_bucket == null ? [] : [var.audit_anchor_bucket]
    content {
      sid    = "AuditAnchor"
      effect = "Allow"
      actions = [
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:PutObject",
      ]
      resources = ["arn:aws:s3:::${statement.value}", "arn:aws:s3:::${statement.value}/*"]
    }
  }

  dynamic "statement" {
    for_each = length(var.admin_role_arns) > 0 ? [1] : []
    content {
      sid       = "AssumeKillSwitchRoles"
      effect    = "Allow"
      actions   = ["sts:AssumeRole"]
      resources = var.admin_role_arns
    }
  }
}

resource "aws_iam_role_policy" "broker" {
  count = var.role_name == null ? 0 : 1

  name   = var.policy_name
  role   = var.role_name
  policy = data.aws_iam_policy_document.broker.json
}
