# Written for the engine at metakraftwerk/. At another mount, put its path in:
#   sed "s|^path \"metakraftwerk/|path \"$MOUNT/|" team-b.hcl | vault policy write team-b -

# Team B may mint MetaKraftwerk tokens for its own roles, and nothing else.
path "metakraftwerk/creds/team-b-*" {
  capabilities = ["read"]
}
