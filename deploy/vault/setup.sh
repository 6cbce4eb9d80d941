#!/usr/bin/env bash
# Configure Vault/OpenBao for the credential broker. Idempotent: run it again after a change.
#
#   VAULT_ADDR=https://vault.example.com:8200 VAULT_TOKEN=<an admin token> deploy/vault/setup.sh
#
# Writes:
#   policy credential-broker-runtime   the running broker (credential-broker-runtime.hcl)
#   policy credential-broker-apply     CI running `broker scopes apply` (credential-broker-apply.hcl)
#   token role broker-tier             how the broker creates agent tokens: orphan, only
#                                      broker-* policies, no default policy, not renewable,
#                                      at most 12 h
#   token role credential-broker       a token for the broker (BROKER_VAULT_TOKEN), when it
#                                      does not log in by itself (vault.auth)
#   token role credential-broker-apply short-lived tokens for the apply job
#   auth/kubernetes role credential-broker, only when BROKER_K8S_HOST is set (see below)
#
# Prints no token. Create the broker's own token straight into its Kubernetes Secret:
#   vault token create -role=credential-broker -field=token \
#     | kubectl -n credential-broker create secret generic broker-vault \
#         --from-file=BROKER_VAULT_TOKEN=/dev/stdin --dry-run=client -o yaml \
#     | kubectl apply -f -
# (docs/operations.md, "Vault token", for rotation).
#
# Environment: VAULT_CLI (default: vault, else bao); BROKER_TOKEN_MAX_TTL (the broker's own
# token, default 768h: rotate before it ends); for the Kubernetes auth role: BROKER_K8S_HOST,
# BROKER_K8S_CA_CERT (a PEM file, when Vault runs outside the cluster), BROKER_K8S_NAMESPACE,
# BROKER_K8S_SERVICE_ACCOUNT.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cli="${VAULT_CLI:-}"
if [ -z "$cli" ]; then
  if command -v vault >/dev/null 2>&1; then cli=vault; else cli=bao; fi
fi
command -v "$cli" >/dev/null 2>&1 || { echo "setup.sh: '$cli' not found (set VAULT_CLI)" >&2; exit 2; }

# The tier policies (broker-*) are written by `broker scopes apply`. The broker's own
# policies must stay outside that name space, or the token role would admit them.
"$cli" policy write credential-broker-runtime "$here/credential-broker-runtime.hcl"
"$cli" policy write credential-broker-apply "$here/credential-broker-apply.hcl"

"$cli" write auth/token/roles/broker-tier \
  allowed_policies_glob="broker-*" \
  disallowed_policies="root,credential-broker-runtime,credential-broker-apply" \
  orphan=true \
  renewable=false \
  token_no_default_policy=true \
  token_type=service \
  token_explicit_max_ttl=12h

"$cli" write auth/token/roles/credential-broker \
  allowed_policies="credential-broker-runtime" \
  orphan=true \
  renewable=true \
  token_no_default_policy=true \
  token_type=service \
  token_explicit_max_ttl="${BROKER_TOKEN_MAX_TTL:-768h}"

"$cli" write auth/token/roles/credential-broker-apply \
  allowed_policies="credential-broker-apply" \
  orphan=true \
  renewable=false \
  token_no_default_policy=true \
  token_type=service \
  token_explicit_max_ttl=1h

# Kubernetes auth: the broker's service account logs in with credential-broker-runtime
# (vault.auth.method: kubernetes in broker.yaml). Periodic tokens, no maximum TTL: database
# logins are leases of the token that requested them and end with it, so the period (which
# the broker renews at two thirds) is at least the longest tier ttl (12 h), and a pod's
# token outlives the pod by one period, long enough for its leases to run out by themselves.
if [ -n "${BROKER_K8S_HOST:-}" ]; then
  # Read the list whole: `| grep -q` would stop early and, under pipefail, fail the check.
  auth_methods="$("$cli" auth list -format=json)"
  case "$auth_methods" in
    *'"kubernetes/"'*) ;;
    *) "$cli" auth enable kubernetes ;;
  esac
  if [ -n "${BROKER_K8S_CA_CERT:-}" ]; then
    # Vault outside the cluster: the API server's CA, and each login's own JWT is used
    # for the TokenReview (the broker's service account needs system:auth-delegator).
    "$cli" write auth/kubernetes/config kubernetes_host="$BROKER_K8S_HOST" \
      kubernetes_ca_cert=@"$BROKER_K8S_CA_CERT" disable_local_ca_jwt=true
  else
    # Vault inside the cluster: its own service account's CA and token.
    "$cli" write auth/kubernetes/config kubernetes_host="$BROKER_K8S_HOST"
  fi
  "$cli" write auth/kubernetes/role/credential-broker \
    bound_service_account_names="${BROKER_K8S_SERVICE_ACCOUNT:-credential-broker}" \
    bound_service_account_namespaces="${BROKER_K8S_NAMESPACE:-credential-broker}" \
    token_policies="credential-broker-runtime" \
    token_no_default_policy=true \
    token_period=12h
fi

echo "setup.sh: Vault is configured for the credential broker" >&2
