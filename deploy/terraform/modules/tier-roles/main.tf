# One IAM role per scope, environment and tier, from the broker's compiled plan:
#   broker scopes plan scopes --json > plan.json
# Each role trusts only the broker's principal, requires a SourceIdentity (so CloudTrail
# names the agent), allows session tags, and carries the tier's role policy inline (and, by
# default, as its permissions boundary). The trust policy and the inline policy's name are
# the ones `broker scopes apply` writes (broker/apply/desired.py), so the two agree.

locals {
  plan = jsondecode(file(var.plan_file))

  # "service/environment/tier" => what the role needs, for tiers with AWS in this account.
  # role_policy stays a JSON string so every value has the same type.
  tiers = merge({}, [
    for service, environments in local.plan : merge({}, [
      for environment, tiers in environments : {
        for tier, compiled in tiers :
        "${service}/${environment}/${tier}" => {
          service     = service
          environment = environment
          tier        = tier
          role_arn    = compiled.aws.role_arn
          role_policy = jsonencode(compiled.aws.role_policy)
          ttl_seconds = compiled.ttl_seconds
          # arn:aws:iam::ACCOUNT:role/PATH/NAME -> "/PATH/NAME"
          resource = trimprefix(split(":", compiled.aws.role_arn)[5], "role")
        }
        if try(compiled.aws.role_policy, null) != null && split(":", try(compiled.aws.role_arn, "::::"))[4] == var.account_id
      }
    ]...)
  ]...)

  roles = {
    for key, t in local.tiers : key => merge(t, {
      name = regex("[^/]+$", t.resource)
      path = replace(t.resource, "/[^/]+$/", "")
    })
  }

  partition         = split(":", var.broker_principal_arn)[1]
  tier_role_pattern = "arn:${local.partition}:iam::${var.account_id}:role${var.tier_role_path}*"

  common_tags = merge(var.tags, { "managed-by" = "credential-broker" })
}

# Mirrors trust_policy() in broker/apply/desired.py.
data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "BrokerAssumesWithSourceIdentity"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.broker_principal_arn]
    }
    # A missing SourceIdentity matches no StringLike pattern: AssumeRole without one fails.
    condition {
      test     = "StringLike"
      variable = "sts:SourceIdentity"
      values   = ["*"]
    }
  }

  statement {
    sid     = "BrokerTagsSessions"
    effect  = "Allow"
    actions = ["sts:TagSession", "sts:SetSourceIdentity"]
    principals {
      type        = "AWS"
      identifiers = [var.broker_principal_arn]
    }
  }
}

resource "aws_iam_policy" "boundary" {
  for_each = var.permissions_boundary ? local.roles : {}

  name        = "${each.value.name}-boundary"
  path        = var.boundary_path
  description = "credential broker: ceiling of ${each.key}"
  policy      = each.value.role_policy
  tags        = local.common_tags
}

resource "aws_iam_role" "tier" {
  for_each = local.roles

  name                  = each.value.name
  path                  = each.value.path
  description           = "credential broker: ${each.key}"
  assume_role_policy    = data.aws_iam_policy_document.trust.json
  max_session_duration  = min(43200, max(3600, each.value.ttl_seconds))
  permissions_boundary  = var.permissions_boundary ? aws_iam_policy.boundary[each.key].arn : null
  force_detach_policies = true

  tags = merge(local.common_tags, {
    "broker:service"     = each.value.service
    "broker:environment" = each.value.environment
    "broker:tier"        = each.value.tier
  })

  lifecycle {
    precondition {
      condition     = startswith(each.value.path, var.tier_role_path)
      error_message = "Tier role ${each.value.role_arn} is outside tier_role_path ${var.tier_role_path}; the broker's IAM permissions are scoped to that path."
    }
  }
}

# The tier's permissions. The kill switch adds its own inline policy beside this one (deny
# sessions issued before a time); Terraform manages only this name and leaves that alone.
resource "aws_iam_role_policy" "permissions" {
  for_each = local.roles

  name   = "broker-tier-permissions"
  role   = aws_iam_role.tier[each.key].id
  policy = each.value.role_policy
}

check "role_chaining_session_limit" {
  assert {
    condition     = !var.broker_uses_role_chaining || alltrue([for t in values(local.roles) : t.ttl_seconds <= 3600])
    error_message = "Tiers with a ttl over 1h: ${join(", ", [for k, t in local.roles : k if t.ttl_seconds > 3600])}. The broker runs with role credentials, so AWS caps chained role sessions at 1 hour whatever MaxSessionDuration says; such requests fail."
  }
}

# ---- optional: the role the broker assumes here for the kill switch ----------------------

data "aws_iam_policy_document" "admin_trust" {
  statement {
    sid     = "BrokerOnly"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.broker_principal_arn]
    }
  }
}

data "aws_iam_policy_document" "admin" {
  statement {
    sid       = "KillSwitchWritesRevocationPolicy"
    effect    = "Allow"
    actions   = ["iam:PutRolePolicy", "iam:DeleteRolePolicy"]
    resources = [local.tier_role_pattern]

    dynamic "condition" {
      for_each = var.permissions_boundary ? [1] : []
      content {
        test     = "StringLike"
        variable = "iam:PermissionsBoundary"
        values   = ["arn:${local.partition}:iam::${var.account_id}:policy${var.boundary_path}*"]
      }
    }
  }

  statement {
    sid       = "KillSwitchReadsRevocationPolicy"
    effect    = "Allow"
    actions   = ["iam:GetRolePolicy"]
    resources = [local.tier_role_pattern]
  }
}

resource "aws_iam_role" "admin" {
  count = var.admin_role_name == null ? 0 : 1

  name                 = var.admin_role_name
  path                 = "/"
  description          = "credential broker: kill switch on the tier roles of this account"
  assume_role_policy   = data.aws_iam_policy_document.admin_trust.json
  max_session_duration = 3600
  tags                 = local.common_tags
}

resource "aws_iam_role_policy" "admin" {
  count = var.admin_role_name == null ? 0 : 1

  name   = "credential-broker-kill-switch"
  role   = aws_iam_role.admin[0].id
  policy = data.aws_iam_policy_document.admin.json
}
