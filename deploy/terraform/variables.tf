# Release
variable "release_name" {
  description = "Helm release name. The chart names its objects after it (\"memcloud\" gives a Service named memcloud)."
  type        = string
  default     = "memcloud"
}

variable "namespace" {
  description = "Kubernetes namespace to deploy into."
  type        = string
  default     = "memcloud"
}

variable "create_namespace" {
  description = "Create the namespace if it does not exist."
  type        = bool
  default     = true
}

variable "chart_path" {
  description = "Path to the memcloud chart; defaults to the copy in this repository."
  type        = string
  default     = null
}

variable "timeout_seconds" {
  description = "How long Helm waits for the migrate hook and the rollout."
  type        = number
  default     = 600
}

# Image and replicas
variable "image_repository" {
  description = "Container image repository built from the repository's Dockerfile."
  type        = string
}

variable "image_tag" {
  description = "Image tag. Pin a release tag or a digest-named tag, never latest."
  type        = string

  validation {
    condition     = var.image_tag != "" && var.image_tag != "latest"
    error_message = "image_tag must be a fixed tag, not empty or \"latest\"."
  }
}

variable "replicas" {
  description = "Replica count (the minimum when autoscaling is on)."
  type        = number
  default     = 2

  validation {
    condition     = var.replicas >= 1
    error_message = "replicas must be at least 1."
  }
}

variable "autoscaling_max_replicas" {
  description = "When greater than replicas, a HorizontalPodAutoscaler scales between the two on CPU."
  type        = number
  default     = 0
}

variable "gunicorn_workers" {
  description = "gunicorn workers per pod (GUNICORN_WORKERS)."
  type        = number
  default     = 2
}

variable "resources" {
  description = "Container resources. Memory limit: workers x (index_memory_mb + ~200 MB)."
  type = object({
    requests = map(string)
    limits   = map(string)
  })
  default = {
    requests = { cpu = "500m", memory = "1Gi" }
    limits   = { memory = "3Gi" }
  }
}

# Secrets: either the name of an existing Secret, or the values for a chart-made one.
variable "existing_secret_name" {
  description = "Existing Secret with DATABASE_URL, DJANGO_SECRET_KEY and optionally AGENT_MEM_API_KEY and REDIS_URL. Set to null to pass the values below instead."
  type        = string
  default     = "memcloud-secrets"
}

variable "database_url" {
  description = "DATABASE_URL (postgres://...) when existing_secret_name is null."
  type        = string
  default     = null
  sensitive   = true
}

variable "django_secret_key" {
  description = "DJANGO_SECRET_KEY when existing_secret_name is null."
  type        = string
  default     = null
  sensitive   = true
}

variable "bootstrap_api_key" {
  description = "Optional AGENT_MEM_API_KEY (authenticates as tenant \"default\") when existing_secret_name is null."
  type        = string
  default     = null
  sensitive   = true
}

variable "metrics_token" {
  description = "AGENT_MEM_METRICS_TOKEN, the bearer token /metrics asks of scrapers (the ServiceMonitor sends it), when existing_secret_name is null. Required then with service_monitor_enabled."
  type        = string
  default     = null
  sensitive   = true
}

# Ingress
variable "ingress_host" {
  description = "Public host name; null means no Ingress."
  type        = string
  default     = null
}

variable "ingress_class_name" {
  description = "IngressClass; the tenant-affine hash annotation is for ingress-nginx."
  type        = string
  default     = "nginx"
}

variable "ingress_tls_secret_name" {
  description = "TLS Secret for the ingress host; null serves plain HTTP at the ingress."
  type        = string
  default     = null
}

# Service settings (docs/api.md §1)
variable "allowed_hosts" {
  description = "Extra DJANGO_ALLOWED_HOSTS (the ingress host and cluster names are added by the chart)."
  type        = list(string)
  default     = []
}

variable "redis_url" {
  description = "REDIS_URL for rate-limit counters; empty keeps them in PostgreSQL. A URL with a password belongs in the existing Secret."
  type        = string
  default     = ""
}

variable "embedding_dim" {
  description = "AGENT_MEM_DIM: embedding dimension for new tenants."
  type        = number
  default     = 384
}

variable "rate_limit" {
  description = "AGENT_MEM_RATE_LIMIT: requests per tenant per window; null means no limit."
  type        = number
  default     = null
}

variable "rate_window_secs" {
  description = "AGENT_MEM_RATE_WINDOW_SECS."
  type        = number
  default     = 60
}

variable "audit_log" {
  description = "AGENT_MEM_AUDIT_LOG path (under the data dir to keep it); empty disables it."
  type        = string
  default     = ""
}

variable "max_batch" {
  description = "AGENT_MEM_MAX_BATCH."
  type        = number
  default     = 1000
}

variable "max_body_bytes" {
  description = "AGENT_MEM_MAX_BODY_BYTES."
  type        = number
  default     = 33554432
}

variable "max_top_k" {
  description = "AGENT_MEM_MAX_TOP_K."
  type        = number
  default     = 1000
}

variable "index_memory_mb" {
  description = "AGENT_MEM_INDEX_MEMORY_MB: per-worker budget for cached tenant indexes."
  type        = number
  default     = 1024
}

# Storage and monitoring
variable "persistence_enabled" {
  description = "Back AGENT_MEM_DATA_DIR (snapshots, checkpoints) with a PersistentVolumeClaim."
  type        = bool
  default     = false
}

variable "persistence_storage_class" {
  description = "StorageClass of the data volume; it must offer ReadWriteMany when replicas > 1."
  type        = string
  default     = ""
}

variable "persistence_size" {
  description = "Size of the data volume."
  type        = string
  default     = "10Gi"
}

variable "service_monitor_enabled" {
  description = "Create a ServiceMonitor (needs the Prometheus Operator CRDs)."
  type        = bool
  default     = false
}
