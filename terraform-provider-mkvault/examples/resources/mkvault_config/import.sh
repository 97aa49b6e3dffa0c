# The config is imported by its mount.
terraform import mkvault_config.this metakraftwerk
