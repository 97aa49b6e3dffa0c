# Written for the engine at metakraftwerk/. At another mount, put its path in:
#   sed "s|^path \"metakraftwerk/|path \"$MOUNT/|" metrics.hcl | vault policy write metrics -

# Prometheus may read the engine's metrics, and nothing else.
path "metakraftwerk/metrics" {
  capabilities = ["read"]
}
