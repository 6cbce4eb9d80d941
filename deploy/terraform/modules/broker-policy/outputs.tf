output "policy_json" {
  description = "The broker's IAM policy document."
  value       = data.aws_iam_policy_document.broker.json
}
