variable "cluster_name" {
  description = "ECS cluster whose services the companion manages"
  type        = string
}

variable "service_names" {
  description = "Managed services (Fargate Spot) in the cluster"
  type        = list(string)
}

variable "fallback_twins" {
  description = "Spot service name => its on-demand twin service (fallback when Spot has no capacity)"
  type        = map(string)
  default     = {}
}

variable "action" {
  description = "What to do on a Spot interruption: alert, scale-out or redeploy (service tags override)"
  type        = string
  default     = "alert"
  validation {
    condition     = contains(["alert", "scale-out", "redeploy"], var.action)
    error_message = "action must be alert, scale-out or redeploy."
  }
}

variable "hold_off_seconds" {
  description = "Seconds a service must be steady before failing back from on-demand"
  type        = number
  default     = 900
}

variable "log_retention_days" {
  description = "Retention of the function's log group"
  type        = number
  default     = 30
}

variable "code_zip" {
  description = "Path of the function's zip (pip install 'spotgrace[fleet]' -t build/; zip it)"
  type        = string
}

variable "name" {
  description = "Name prefix of the resources"
  type        = string
  default     = "spotgrace-fleet"
}
