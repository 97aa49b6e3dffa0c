# The engine's config, two roles and a token for the run, from an empty
# engine at any mount:
#
#   export TF_VAR_team_a_password=… TF_VAR_team_b_password=…
#   terraform apply -var mount="$MOUNT" -var base_url=https://mk.example.com
#
# The passwords are needed only to create a role or to send a new one (with
# a bumped password_wo_version): any other plan runs without them.

terraform {
  required_providers {
    mkvault = {
      source = "metakraftwerk/mkvault"
    }
  }
}

provider "mkvault" {} # VAULT_ADDR and VAULT_TOKEN (or BAO_ADDR and BAO_TOKEN)

variable "mount" {
  type        = string
  description = "Where the engine is mounted."
  default     = "metakraftwerk"
}

variable "base_url" {
  type        = string
  description = "MetaKraftwerk's address."
}

variable "team_a_password" {
  type        = string
  description = "team-a-ci's MetaKraftwerk password."
  sensitive   = true
  ephemeral   = true
  default     = null
}

variable "team_b_password" {
  type        = string
  description = "team-b-deploy's MetaKraftwerk password."
  sensitive   = true
  ephemeral   = true
  default     = null
}

resource "mkvault_config" "this" {
  mount           = var.mount
  base_url        = var.base_url
  request_timeout = 20
}

# The roles take the mount from the config, so that Terraform writes the
# config first and each role's verify login goes to var.base_url.
resource "mkvault_role" "team_a_ci" {
  mount               = mkvault_config.this.mount
  name                = "team-a-ci"
  email               = "team-a-ci@example.com"
  password_wo         = var.team_a_password
  password_wo_version = 1
  projects            = ["TEAM_A"]
  reuse_tokens        = true # a burst of CI jobs costs one login
}

resource "mkvault_role" "team_b_deploy" {
  mount               = mkvault_config.this.mount
  name                = "team-b-deploy"
  email               = "team-b-deploy@example.com"
  password_wo         = var.team_b_password
  password_wo_version = 1
  projects            = ["TEAM_B"]
  ttl                 = 3600
}

# A token for this run only, never stored. role_id is unknown until the
# role exists, so Terraform opens the creds after creating the role.
ephemeral "mkvault_creds" "team_a_ci" {
  role_id = mkvault_role.team_a_ci.id
}

# Something that uses the token: here, one call to MetaKraftwerk's API,
# again whenever team-a-ci's password is sent anew.
resource "terraform_data" "team_a_smoke_test" {
  triggers_replace = [mkvault_role.team_a_ci.password_updated_at]

  provisioner "local-exec" {
    command = "curl -fsS -o /dev/null -H \"Authorization: Bearer $MK_TOKEN\" \"$MK_URL/api/v1/projects\""
    environment = {
      MK_TOKEN = ephemeral.mkvault_creds.team_a_ci.access_token
      MK_URL   = var.base_url
    }
  }
}

output "team_b_deploy_creds_path" {
  value = "${mkvault_role.team_b_deploy.mount}/creds/${mkvault_role.team_b_deploy.name}"
}
