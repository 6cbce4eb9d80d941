# An example root module: tier roles in two accounts, the broker in the first.
#
#   broker scopes validate scopes --config broker.yaml
#   broker scopes plan scopes --json > deploy/terraform/example/plan.json
#   terraform -chdir=deploy/terraform/example init && terraform -chdir=... plan
#
# The accounts match the example scopes in scopes/: prod in 111111111111 (where the broker
# runs), staging in 222222222222. Regenerate plan.json in CI whenever scopes change, so the
# reviewed plan is what IAM enforces.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

locals {
  plan_file = "${path.root}/plan.json"
  # aws.broker_principal_arn in broker.yaml: the role the broker's pods run as (IRSA).
  broker_principal_arn = "arn:aws:iam::111111111111:role/credential-broker"
}

provider "aws" {
  alias  = "prod"
  region = "us-east-1"
  assume_role {
    role_arn = "arn:aws:iam::111111111111:role/terraform"
  }
}

provider "aws" {
  alias  = "staging"
  region = "us-east-1"
  assume_role {
    role_arn = "arn:aws:iam::222222222222:role/terraform"
  }
}

module "tier_roles_prod" {
  source    = "../modules/tier-roles"
  providers = { aws = aws.prod }

  plan_file            = local.plan_file
  account_id           = "111111111111"
  broker_principal_arn = local.broker_principal_arn
}

module "tier_roles_staging" {
  source    = "../modules/tier-roles"
  providers = { aws = aws.staging }

  plan_file            = local.plan_file
  account_id           = "222222222222"
  broker_principal_arn = local.broker_principal_arn
  # The broker runs in another account: it reaches IAM here through this role.
  admin_role_name = "credential-broker-admin"
}

module "broker_policy" {
  source    = "../modules/broker-policy"
  providers = { aws = aws.prod }

  role_name = "credential-broker"
  tier_role_arns = [
    module.tier_roles_prod.tier_role_pattern,
    module.tier_roles_staging.tier_role_pattern,
  ]
  own_account_tier_role_arns = [module.tier_roles_prod.tier_role_pattern]
  boundary_pattern           = module.tier_roles_prod.boundary_pattern
  admin_role_arns            = compact([module.tier_roles_staging.admin_role_arn])
}

output "broker_policy_json" {
  value = module.broker_policy.policy_json
}
