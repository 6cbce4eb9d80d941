variable "plan_file" {
  description = "Path to the output of `broker scopes plan SCOPES --json`: the compiled documents of every scope, environment and tier."
  type        = string
}

variable "account_id" {
  description = "The AWS account this module's provider acts in. Only tier roles whose ARN names this account are created here; call the module once per account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "broker_principal_arn" {
  description = "The broker's own IAM role (aws.broker_principal_arn in broker.yaml). The only principal the tier roles trust."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", var.broker_principal_arn))
    error_message = "broker_principal_arn must be an IAM role ARN."
  }
}

variable "tier_role_path" {
  description = "The IAM path every tier role lives under. Nothing else may live there: the broker may write inline policies on roles under it (the kill switch)."
  type        = string
  default     = "/broker/"
}

variable "permissions_boundary" {
  description = "Attach each tier's permission policy as the role's permissions boundary too, so an inline policy written later (by `broker scopes apply` or a compromised broker) can never grant more than the reviewed plan."
  type        = bool
  default     = true
}

variable "boundary_path" {
  description = "IAM path of the permissions-boundary policies."
  type        = string
  default     = "/broker/boundary/"
}

variable "broker_uses_role_chaining" {
  description = "True when the broker's own credentials come from a role (IRSA, EKS Pod Identity, ECS task role, AssumeRole): AWS then caps every tier session at one hour, and a check warns about tiers with a longer ttl."
  type        = bool
  default     = true
}

variable "admin_role_name" {
  description = "If set, also create this role (at path /) for the broker to assume in this account, allowed only to write, read and delete inline policies on the tier roles here: the kill switch for tier roles outside the broker's own account (aws.admin_role_arn in broker.yaml)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every role and policy."
  type        = map(string)
  default     = {}
}
