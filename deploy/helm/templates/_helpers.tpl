{{/* Names, labels and the pieces the API and worker Deployments share. */}}

{{- define "orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "orchestrator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "api"). */}}
{{- define "orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orchestrator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "orchestrator.componentLabels" -}}
{{ include "orchestrator.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "orchestrator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding OPENAI_API_KEY and the other secret settings. */}}
{{- define "orchestrator.secretName" -}}
{{- default (printf "%s-secrets" (include "orchestrator.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "orchestrator.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "orchestrator.fullname" .)) .Values.auth.apiKeys.existingSecret -}}
{{- end -}}

{{- define "orchestrator.claimName" -}}
{{- default (printf "%s-data" (include "orchestrator.fullname" .)) .Values.storage.persistence.existingClaim -}}
{{- end -}}

{{/*
A setting's value as an environment string. Helm reads numbers as floats, so 209715200 would
print as 2.097152e+08, which an int setting refuses; whole numbers print as integers.
*/}}
{{- define "orchestrator.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.tlsDir" -}}/etc/orchestrator/temporal-tls{{- end -}}
{{- define "orchestrator.apiKeysDir" -}}/etc/orchestrator/api-keys{{- end -}}

{{/* A secret setting, read from the settings Secret when that Secret has it. */}}
{{- define "orchestrator.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "orchestrator.secretName" .root }}
      key: {{ .name }}
      optional: true
{{- end -}}

{{/* Settings both processes read besides the ConfigMap: Temporal, encryption, data, metrics. */}}
{{- define "orchestrator.commonEnv" -}}
- name: DATA_DIR
  value: {{ .Values.storage.mountPath | quote }}
- name: STORAGE_URL
  value: {{ .Values.storage.url | quote }}
- name: STORAGE_ENDPOINT_URL
  value: {{ .Values.storage.endpointUrl | quote }}
- name: STORAGE_REGION
  value: {{ .Values.storage.region | quote }}
- name: STORAGE_PRESIGN_DOWNLOADS
  value: {{ .Values.storage.presignDownloads | quote }}
{{ include "orchestrator.secretEnv" (dict "root" . "name" "STORAGE_ACCESS_KEY_ID") }}
{{ include "orchestrator.secretEnv" (dict "root" . "name" "STORAGE_SECRET_ACCESS_KEY") }}
- name: METRICS_ENABLED
  value: {{ .Values.metrics.enabled | quote }}
{{ include "orchestrator.secretEnv" (dict "root" . "name" "PAYLOAD_ENCRYPTION_KEYS") }}
{{ include "orchestrator.secretEnv" (dict "root" . "name" "METRICS_TOKEN") }}
{{- with .Values.temporal.tls }}
{{- if .enabled }}
{{- if .certKey }}
- name: TEMPORAL_TLS_CERT_PATH
  value: {{ printf "%s/%s" (include "orchestrator.tlsDir" $) .certKey | quote }}
{{- end }}
{{- if .keyKey }}
- name: TEMPORAL_TLS_KEY_PATH
  value: {{ printf "%s/%s" (include "orchestrator.tlsDir" $) .keyKey | quote }}
{{- end }}
{{- if .caKey }}
- name: TEMPORAL_TLS_CA_PATH
  value: {{ printf "%s/%s" (include "orchestrator.tlsDir" $) .caKey | quote }}
{{- end }}
{{- if .serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ .serverName | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.temporal.apiKey.existingSecret }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.temporal.apiKey.existingSecret }}
      key: {{ .Values.temporal.apiKey.key }}
{{- end }}
{{- end -}}

{{/* Volumes both pods mount: /tmp, DATA_DIR and the Temporal TLS files. */}}
{{- define "orchestrator.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .tmpSizeLimit }}
- name: data
{{- if and .root.Values.storage.persistence.enabled (not .root.Values.storage.url) }}
  persistentVolumeClaim:
    claimName: {{ include "orchestrator.claimName" .root }}
{{- else if .root.Values.storage.url }}
  # Object storage holds the data; this is the pod's own scratch and dataset cache.
  emptyDir:
    sizeLimit: {{ .root.Values.storage.cacheSizeLimit }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- if .root.Values.temporal.tls.enabled }}
- name: temporal-tls
  secret:
    secretName: {{ required "temporal.tls.existingSecret names the Secret with the client certificate, key and CA" .root.Values.temporal.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "orchestrator.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ .Values.storage.mountPath }}
{{- if .Values.temporal.tls.enabled }}
- name: temporal-tls
  mountPath: {{ include "orchestrator.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The container hardening both share; the worker adds what its sandbox needs. */}}
{{- define "orchestrator.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Values that cannot work together fail the render with what to change. */}}
{{- define "orchestrator.checks" -}}
{{- if and .Values.storage.url (not (hasPrefix "s3://" .Values.storage.url)) -}}
{{- fail (printf "storage.url %q: use s3://bucket/prefix, or leave it empty for the shared volume" .Values.storage.url) -}}
{{- end -}}
{{- if not (has .Values.auth.mode (list "none" "api_key" "oidc")) -}}
{{- fail (printf "auth.mode %q: use api_key, oidc or none" .Values.auth.mode) -}}
{{- end -}}
{{- if and (eq .Values.auth.mode "none") (not .Values.auth.allowInsecureBind) -}}
{{- fail "auth.mode none: the API would refuse to listen on the pod's address. Use api_key or oidc, or set auth.allowInsecureBind=true if a proxy in front authenticates callers" -}}
{{- end -}}
{{- if and (eq .Values.auth.mode "oidc") (not (and .Values.auth.oidc.issuer .Values.auth.oidc.audience .Values.auth.oidc.jwksUrl)) -}}
{{- fail "auth.mode oidc needs auth.oidc.issuer, auth.oidc.audience and auth.oidc.jwksUrl" -}}
{{- end -}}
{{- if not .Values.worker.metricsPort -}}
{{- fail "worker.metricsPort must not be 0: the worker's liveness and readiness probes are served there" -}}
{{- end -}}
{{- if and (eq (toString .Values.worker.sandbox.procMount) "Unmasked") (ne (toString .Values.worker.sandbox.hostUsers) "false") -}}
{{- fail "worker.sandbox.procMount Unmasked needs worker.sandbox.hostUsers=false (a user-namespaced pod)" -}}
{{- end -}}
{{- if and .Values.metrics.requireToken (not .Values.secrets.existingSecret) (not .Values.secrets.values.METRICS_TOKEN) -}}
{{- fail "metrics.requireToken needs METRICS_TOKEN in secrets.existingSecret or secrets.values" -}}
{{- end -}}
{{- range $key, $value := .Values.config -}}
{{- if has $key (list "HOST" "PORT" "DATA_DIR" "AUTH_MODE" "API_KEYS_FILE" "SANDBOX" "TEMPORAL_ADDRESS" "TEMPORAL_NAMESPACE" "TEMPORAL_TASK_QUEUE" "WORKER_METRICS_HOST" "WORKER_METRICS_PORT" "METRICS_ENABLED" "OPENAI_API_KEY" "ANTHROPIC_API_KEY" "PAYLOAD_ENCRYPTION_KEYS" "WEBHOOK_SECRET" "METRICS_TOKEN" "TEMPORAL_API_KEY" "TEMPORAL_TLS_CERT_PATH" "TEMPORAL_TLS_KEY_PATH" "TEMPORAL_TLS_CA_PATH" "TEMPORAL_TLS_SERVER_NAME" "ALLOW_INSECURE_BIND" "OIDC_ISSUER" "OIDC_AUDIENCE" "OIDC_JWKS_URL" "OIDC_ROLES_CLAIM" "OIDC_LEEWAY_SECONDS" "OIDC_CLIENT_ID" "OIDC_SCOPES" "OIDC_CLIENT_SECRET" "DESK_SESSION_SECRET" "STORAGE_URL" "STORAGE_ENDPOINT_URL" "STORAGE_REGION" "STORAGE_PRESIGN_DOWNLOADS" "STORAGE_ACCESS_KEY_ID" "STORAGE_SECRET_ACCESS_KEY") -}}
{{- fail (printf "config.%s: set it through its own value (see values.yaml), not config" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
