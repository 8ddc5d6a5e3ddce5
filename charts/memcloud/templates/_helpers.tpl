{{/* Names and labels, as `helm create` lays them out. */}}
{{- define "memcloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memcloud.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "memcloud.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memcloud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memcloud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "memcloud.labels" -}}
helm.sh/chart: {{ include "memcloud.chart" . }}
{{ include "memcloud.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "memcloud.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memcloud.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "memcloud.secretName" -}}
{{- default (include "memcloud.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "memcloud.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Host names Django accepts: configured ones, ingress hosts, the Service's names, localhost. */}}
{{- define "memcloud.allowedHosts" -}}
{{- $svc := include "memcloud.fullname" . }}
{{- $hosts := list "localhost" "127.0.0.1" $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}
{{- $hosts = append $hosts .host }}
{{- end }}
{{- end }}
{{- $hosts = concat .Values.config.allowedHosts $hosts }}
{{- $hosts | uniq | join "," }}
{{- end }}

{{/* Environment shared by the app and the migrate Job (docs/api.md §1). */}}
{{- define "memcloud.env" -}}
{{- $secret := include "memcloud.secretName" . -}}
- name: DJANGO_DEBUG
  value: "0"
- name: DJANGO_ALLOWED_HOSTS
  value: {{ include "memcloud.allowedHosts" . | quote }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.databaseUrl }}
- name: DJANGO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.secretKey }}
- name: AGENT_MEM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.apiKey }}
      optional: true
- name: REDIS_URL
{{- if .Values.config.redisUrl }}
  value: {{ .Values.config.redisUrl | quote }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.redisUrl }}
      optional: true
{{- end }}
- name: AGENT_MEM_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.metricsToken }}
      optional: true
{{- with .Values.config.metricsAllow }}
- name: AGENT_MEM_METRICS_ALLOW
  value: {{ join "," . | quote }}
{{- end }}
{{- if .Values.config.publicDashboard }}
- name: AGENT_MEM_PUBLIC_DASHBOARD
  value: "1"
{{- end }}
- name: AGENT_MEM_DIM
  value: {{ .Values.config.dim | quote }}
- name: AGENT_MEM_DATA_DIR
  value: {{ .Values.config.dataDir | quote }}
{{- if ne (toString .Values.config.rateLimit) "" }}
- name: AGENT_MEM_RATE_LIMIT
  value: {{ .Values.config.rateLimit | quote }}
{{- end }}
- name: AGENT_MEM_RATE_WINDOW_SECS
  value: {{ .Values.config.rateWindowSecs | quote }}
{{- if .Values.config.auditLog }}
- name: AGENT_MEM_AUDIT_LOG
  value: {{ .Values.config.auditLog | quote }}
{{- end }}
- name: AGENT_MEM_MAX_BATCH
  value: {{ .Values.config.maxBatch | quote }}
- name: AGENT_MEM_MAX_BODY_BYTES
  value: {{ .Values.config.maxBodyBytes | int64 | quote }}
- name: AGENT_MEM_MAX_TOP_K
  value: {{ .Values.config.maxTopK | quote }}
- name: AGENT_MEM_INDEX_MEMORY_MB
  value: {{ .Values.config.indexMemoryMb | quote }}
- name: GUNICORN_BIND
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPort) | quote }}
- name: GUNICORN_WORKERS
  value: {{ .Values.gunicorn.workers | quote }}
- name: PROMETHEUS_MULTIPROC_DIR
  value: /var/run/memcloud/prometheus
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
