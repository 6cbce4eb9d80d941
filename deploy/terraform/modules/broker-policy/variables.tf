variable "role_name" {
  description = "The broker's own IAM role (the IRSA/Pod Identity role its pods run as) to attach the policy to. Null: only render the policy (output policy_json)."
  type        = string
  default     = null
}

variable "tier_role_arns" {
  description = "ARN patterns of the tier roles the broker assumes, one per account, e.g. arn:aws:iam::111111111111:role/broker/* (the tier-roles module's tier_role_pattern output)."
  type        = list(string)

  validation {
    condition     = length(var.tier_role_arns) > 0 && alltrue([for a in var.tier_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[^*]+", a))])
    error_message = "Each tier role pattern must be a role ARN in a named account with a fixed path before any '*'."
  }
}

variable "own_account_tier_role_arns" {
  description = "ARN patterns of the tier roles in the broker's own account: the kill switch writes its revocation policy on these directly (IAM cannot be called across accounts)."
  type        = list(string)
  default     = []
}

variable "boundary_pattern" {
  description = "If set, the kill switch may write inline policies only on roles carrying a permissions boundary matching this ARN pattern (the tier-roles module's boundary_pattern output)."
  type        = string
  default     = null
}

variable "admin_role_arns" {
  description = "The kill-switch roles the broker assumes in the other accounts (the tier-roles module's admin_role_arn output; aws.admin_role_arn in broker.yaml)."
  type        = list(string)
  default     = []
}

variable "policy_name" {
  description = "Name of the inline policy on the broker's role."
  type        = string
  default     = "credential-broker"
}

variable "audit_anchor_bucket" {
  description = "The audit anchor's bucket (audit.anchor.bucket in broker.yaml), created with Object Lock enabled; null: no anchor statement."
  type        = string
  default     = null
}
