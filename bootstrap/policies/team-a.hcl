# Written for the engine at metakraftwerk/. At another mount, put its path in:
#   sed "s|^path \"metakraftwerk/|path \"$MOUNT/|" team-a.hcl | vault policy write team-a -

# Team A may mint MetaKraftwerk tokens for its own roles, and nothing else:
# no access to other teams' roles, to role definitions, or to the engine config.
path "metakraftwerk/creds/team-a-*" {
  capabilities = ["read"]
}
