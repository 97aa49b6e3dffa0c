terraform {
  required_providers {
    mkvault = {
      source = "metakraftwerk/mkvault"
    }
  }
}

# Every setting falls back to the Vault CLI's variables (VAULT_ADDR,
# VAULT_TOKEN, VAULT_NAMESPACE, VAULT_CACERT), then OpenBao's BAO_ ones, and
# the token last of all to ~/.vault-token.
provider "mkvault" {}
