# Written for the engine at metakraftwerk/. At another mount, put its path in:
#   sed "s|^path \"metakraftwerk/|path \"$MOUNT/|" platform.hcl | vault policy write platform -

# The platform team runs the engine: its configuration, every role, and
# the on-call paths. It does not mint tokens for the teams' roles.
path "metakraftwerk/config" {
  capabilities = ["create", "read", "update", "delete"]
}
path "metakraftwerk/roles" {
  capabilities = ["list"]
}
path "metakraftwerk/roles/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "metakraftwerk/rotate-role/*" {
  capabilities = ["update"]
}
path "metakraftwerk/verify-role/*" {
  capabilities = ["update"]
}
path "metakraftwerk/metrics" {
  capabilities = ["read"]
}
