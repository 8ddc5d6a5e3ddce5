# Deploys charts/memcloud to an existing cluster. The caller configures the helm provider
# (see examples/basic).

locals {
  chart_path  = coalesce(var.chart_path, "${path.module}/../../charts/memcloud")
  autoscaling = var.autoscaling_max_replicas > var.replicas

  # Chart values, key for key as in charts/memcloud/values.yaml. Secrets are not here: they
  # go through set_sensitive so that plans never print them.
  values = {
    image = {
      repository = var.image_repository
      tag        = var.image_tag
    }
    replicaCount = var.replicas
    config = {
      allowedHosts   = var.allowed_hosts
      redisUrl       = var.redis_url
      dim            = var.embedding_dim
      rateLimit      = var.rate_limit == null ? "" : tostring(var.rate_limit)
      rateWindowSecs = var.rate_window_secs
      auditLog       = var.audit_log
      maxBatch       = var.max_batch
      maxBodyBytes   = var.max_body_bytes
      maxTopK        = var.max_top_k
      indexMemoryMb  = var.index_memory_mb
    }
    gunicorn = {
      workers = var.gunicorn_workers
    }
    resources = var.resources
    secret = {
      existingSecret = var.existing_secret_name == null ? "" : var.existing_secret_name
    }
    ingress = {
      enabled   = var.ingress_host != null
      className = var.ingress_class_name
      hosts = var.ingress_host == null ? [] : [{
        # No paths: the chart's public ones (ingress.paths), never /metrics.
        host = var.ingress_host
      }]
      tls = var.ingress_tls_secret_name == null || var.ingress_host == null ? [] : [{
        hosts      = [var.ingress_host]
        secretName = var.ingress_tls_secret_name
      }]
    }
    autoscaling = {
      enabled     = local.autoscaling
      minReplicas = var.replicas
      maxReplicas = local.autoscaling ? var.autoscaling_max_replicas : var.replicas
    }
    persistence = {
      enabled          = var.persistence_enabled
      storageClassName = var.persistence_storage_class
      size             = var.persistence_size
    }
    serviceMonitor = {
      enabled = var.service_monitor_enabled
    }
  }

  secret_values = var.existing_secret_name != null ? [] : concat(
    [
      { name = "secret.databaseUrl", value = var.database_url },
      { name = "secret.secretKey", value = var.django_secret_key },
    ],
    var.bootstrap_api_key == null ? [] : [{ name = "secret.apiKey", value = var.bootstrap_api_key }],
    var.metrics_token == null ? [] : [{ name = "secret.metricsToken", value = var.metrics_token }],
  )
}

resource "helm_release" "memcloud" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = var.create_namespace
  chart            = local.chart_path

  values        = [yamlencode(local.values)]
  set_sensitive = local.secret_values

  # Wait for the migrate hook and the rollout; roll back on failure.
  wait            = true
  wait_for_jobs   = true
  atomic          = true
  cleanup_on_fail = true
  timeout         = var.timeout_seconds

  lifecycle {
    precondition {
      condition     = var.existing_secret_name != null || (var.database_url != null && var.django_secret_key != null)
      error_message = "Give existing_secret_name, or both database_url and django_secret_key."
    }
  }
}
