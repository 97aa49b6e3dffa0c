variable "mount" {
  type        = string
  description = "Where the engine is mounted."
  default     = "metakraftwerk"
}

variable "base_url" {
  type        = string
  description = "MetaKraftwerk's address, e.g. a self-hosted installation."
}

resource "mkvault_config" "this" {
  mount           = var.mount
  base_url        = var.base_url
  request_timeout = 20
}
