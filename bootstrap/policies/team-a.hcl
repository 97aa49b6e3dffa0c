# Team A may mint MetaKraftwerk tokens for its own roles, and nothing else:
# no access to other teams' roles, to role definitions, or to the engine config.
path "metakraftwerk/creds/team-a-*" {
  capabilities = ["read"]
}
