output "role_arns" {
  description = "Tier role ARNs by \"service/environment/tier\"."
  value       = { for key, role in aws_iam_role.tier : key => role.arn }
}

output "tier_role_pattern" {
  description = "The ARN pattern covering every tier role of this account (for the broker's own policy)."
  value       = local.tier_role_pattern
}

output "admin_role_arn" {
  description = "The kill-switch role the broker assumes in this account, if created."
  value       = var.admin_role_name == null ? null : aws_iam_role.admin[0].arn
}

output "boundary_pattern" {
  description = "The ARN pattern of the permissions-boundary policies of this account."
  value       = "arn:${local.partition}:iam::${var.account_id}:policy${var.boundary_path}*"
}
