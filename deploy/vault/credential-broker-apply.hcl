# credential-broker-apply: what `broker scopes apply` needs in Vault/OpenBao. Held by the
# CI job that applies reviewed scope changes, not by the running broker: whoever can write
# a broker-* policy can give the tokens the broker issues any capability.

# The tier ACL policies, broker-<service>-<environment>-<tier>.
path "sys/policies/acl/broker-*" {
  capabilities = ["create", "read", "update", "delete"]
}

path "sys/policies/acl" {
  capabilities = ["list"]
}

# The tier database roles (their creation SQL comes from the compiled scope).
path "database/roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Apply checks that each scope's connection exists before writing roles for it.
path "database/config/*" {
  capabilities = ["read"]
}
