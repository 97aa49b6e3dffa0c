# Team B may mint MetaKraftwerk tokens for its own roles, and nothing else.
path "metakraftwerk/creds/team-b-*" {
  capabilities = ["read"]
}
