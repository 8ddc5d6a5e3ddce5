# Example root module: deploy memcloud with an existing Secret and an ingress host.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }
}

variable "kubeconfig_path" {
  description = "kubeconfig of the target cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "image_tag" {
  description = "Image tag to deploy."
  type        = string
}

provider "helm" {
  kubernetes = {
    config_path = var.kubeconfig_path
  }
}

module "memcloud" {
  source = "../.."

  image_repository          = "registry.example.com/memcloud"
  image_tag                 = var.image_tag
  replicas                  = 3
  autoscaling_max_replicas  = 8
  existing_secret_name      = "memcloud-secrets"
  ingress_host              = "memcloud.example.com"
  ingress_tls_secret_name   = "memcloud-tls"
  redis_url                 = "redis://redis-master.cache.svc:6379/0"
  rate_limit                = 600
  persistence_enabled       = true
  persistence_storage_class = "nfs-client"
}

output "url" {
  description = "Public URL of the service."
  value       = module.memcloud.url
}
