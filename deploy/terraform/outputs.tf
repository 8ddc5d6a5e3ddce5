output "release_name" {
  description = "Helm release name."
  value       = helm_release.memcloud.name
}

output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.memcloud.namespace
}

output "status" {
  description = "Helm release status (deployed when the rollout succeeded)."
  value       = helm_release.memcloud.status
}

output "chart_version" {
  description = "Version of the deployed chart."
  value       = helm_release.memcloud.version
}

output "service_name" {
  description = "In-cluster Service name (port 80), following the chart's naming rule."
  value       = strcontains(var.release_name, "memcloud") ? var.release_name : "${var.release_name}-memcloud"
}

output "url" {
  description = "Public URL when an ingress host is set, else null."
  value       = var.ingress_host == null ? null : "${var.ingress_tls_secret_name == null ? "http" : "https"}://${var.ingress_host}/"
}
