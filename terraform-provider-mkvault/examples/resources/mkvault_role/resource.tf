variable "team_a_password" {
  type        = string
  description = "team-a-ci's MetaKraftwerk password; needed only to create the role or to send a new one."
  sensitive   = true
  ephemeral   = true # in no plan, state or log
  default     = null
}

resource "mkvault_role" "team_a_ci" {
  # Through the config, so that the config is written first: the role's
  # verify login goes to the base_url configured here.
  mount               = mkvault_config.this.mount
  name                = "team-a-ci"
  email               = "team-a-ci@example.com"
  password_wo         = var.team_a_password
  password_wo_version = 1 # bump it, with the new password, to send it again
  projects            = ["TEAM_A"]
  reuse_tokens        = true
}
