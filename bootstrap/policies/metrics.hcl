# Prometheus may read the engine's metrics, and nothing else.
path "metakraftwerk/metrics" {
  capabilities = ["read"]
}
