# credential-broker-runtime: what the running broker's own Vault/OpenBao token may do.
# Written by deploy/vault/setup.sh. Database engine mounted at database/ (add blocks for
# other mounts your scopes name under database.mount).
#
# Deliberately absent: writing the tiers' ACL policies and database roles (that is
# credential-broker-apply, held by CI for `broker scopes apply`), and sudo anywhere but the
# two paths the reconciler needs (listing token accessors, revoking a request's leases). In
# particular no sudo on auth/token/create-orphan: with sudo there, a token can create
# orphan tokens carrying ANY policy but root. Agent tokens are created through the token
# role broker-tier instead, which only admits policies named broker-* and makes every
# token an orphan without the default policy.

# Issue agent tokens: orphan, only broker-* policies, at most 12 h (role broker-tier).
path "auth/token/create/broker-tier" {
  capabilities = ["update"]
}

# Revoke agent tokens by accessor (kill switch, end of a request) and look them up.
path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}

path "auth/token/lookup-accessor" {
  capabilities = ["update"]
}

# Each request's own documents: an ACL policy (only the KV paths it named) and a database
# role (grants on the tables it named, a lease of its duration), both named
# broker-req-<request id>, made before the credential and deleted when it ends. Whoever
# holds this policy can write any such document: see docs/threat-model.md.
path "sys/policies/acl/broker-req-*" {
  capabilities = ["create", "update", "delete"]
}

path "database/roles/broker-req-*" {
  capabilities = ["create", "update", "delete"]
}

# Database logins: one per request, from the request's own role.
path "database/creds/broker-req-*" {
  capabilities = ["read"]
}

# The connection's host, port and database name, returned to the agent with its login
# (Vault never returns the connection's password).
path "database/config/*" {
  capabilities = ["read"]
}

# Revoke a database lease by id (the login is dropped) and look leases up.
path "sys/leases/revoke" {
  capabilities = ["update"]
}

path "sys/leases/lookup" {
  capabilities = ["update"]
}

# The broker's own token.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

# The reconciler (docs/operations.md): it finds what a replica minted but never recorded
# (it died between Vault's answer and its own record) by the request id in each token's
# metadata, and the requests' own policies and roles whose credential ended. Listing
# accessors needs sudo; it reveals accessors (never tokens), which revoke-accessor above
# already lets the broker use.
path "auth/token/accessors" {
  capabilities = ["list", "sudo"]
}

path "sys/policies/acl" {
  capabilities = ["list"]
}

path "database/roles" {
  capabilities = ["list"]
}

# Every lease of one request's own database role (a login minted but never recorded).
path "sys/leases/revoke-prefix/database/creds/broker-req-*" {
  capabilities = ["update", "sudo"]
}
