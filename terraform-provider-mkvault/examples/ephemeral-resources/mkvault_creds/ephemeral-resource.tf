# role_id, not mount and name: the id is unknown until the role exists, so
# Terraform opens the creds only once the role is there.
ephemeral "mkvault_creds" "team_a_ci" {
  role_id = mkvault_role.team_a_ci.id
}

# Something that uses the token for this run, here one call to
# MetaKraftwerk's API; again whenever team-a-ci's password is sent anew.
resource "terraform_data" "team_a_smoke_test" {
  triggers_replace = [mkvault_role.team_a_ci.password_updated_at]

  provisioner "local-exec" {
    command = "curl -fsS -o /dev/null -H \"Authorization: Bearer $MK_TOKEN\" \"$MK_URL/api/v1/projects\""
    environment = {
      MK_TOKEN = ephemeral.mkvault_creds.team_a_ci.access_token
      MK_URL   = mkvault_config.this.base_url
    }
  }
}
