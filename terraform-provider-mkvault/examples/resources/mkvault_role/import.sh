# A role is imported by <mount>/<name>. The first apply after it records
# password_wo_version without sending the password.
terraform import mkvault_role.team_a_ci metakraftwerk/team-a-ci
