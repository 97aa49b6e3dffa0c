data "mkvault_role" "team_a_ci" {
  mount = mkvault_role.team_a_ci.mount
  name  = mkvault_role.team_a_ci.name
}

check "team_a_ci_logs_in" {
  assert {
    condition     = data.mkvault_role.team_a_ci.last_error == ""
    error_message = "team-a-ci's last login failed: ${data.mkvault_role.team_a_ci.last_error}"
  }
}
