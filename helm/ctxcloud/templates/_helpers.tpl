{{/*
Names, labels and shared fragments of the ctxcloud chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "ctxcloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (or fullnameOverride), at most 63 characters. */}}
{{- define "ctxcloud.fullname" -}}
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

{{/* chart-version, as the helm.sh/chart label wants it. */}}
{{- define "ctxcloud.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "ctxcloud.labels" -}}
helm.sh/chart: {{ include "ctxcloud.chart" . }}
{{ include "ctxcloud.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ctxcloud
{{- end }}

{{/* Labels that select the service's pods (never change them: selectors are immutable). */}}
{{- define "ctxcloud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ctxcloud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the service's pods use. */}}
{{- define "ctxcloud.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ctxcloud.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "ctxcloud.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the service's secrets: existingSecret or the chart's own. */}}
{{- define "ctxcloud.secretName" -}}
{{- default (include "ctxcloud.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Replicas the deployment starts from: the HPA's minimum or replicaCount. */}}
{{- define "ctxcloud.minReplicas" -}}
{{- if and .Values.autoscaling.enabled (not (kindIs "invalid" .Values.autoscaling.minReplicas)) }}
{{- .Values.autoscaling.minReplicas }}
{{- else }}
{{- .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Annotations that make the ConfigMap and Secret exist before the migration Job (a pre-install
hook runs before the release's ordinary resources are created).
*/}}
{{- define "ctxcloud.preHookAnnotations" -}}
{{- if .Values.migrations.enabled }}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation
{{- end }}
{{- end }}

{{/* The container securityContext every ctxcloud container runs with. */}}
{{- define "ctxcloud.containerSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.securityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.securityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The pod securityContext. */}}
{{- define "ctxcloud.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.securityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.securityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.securityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Environment of every ctxcloud container: the ConfigMap, the Secret, then extras. */}}
{{- define "ctxcloud.envFrom" -}}
- configMapRef:
    name: {{ include "ctxcloud.fullname" . }}
- secretRef:
    name: {{ include "ctxcloud.secretName" . }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Writable scratch volumes (the root filesystem is read-only). */}}
{{- define "ctxcloud.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.tmpSizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.scratch.dataSizeLimit }}
{{- end }}

{{- define "ctxcloud.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/ctxcloud
{{- end }}

{{/* Where the GCS credentials file (config.gcs.credentialsSecret) is mounted. */}}
{{- define "ctxcloud.gcsCredentialsDir" -}}
/var/run/secrets/ctxcloud/gcs
{{- end }}

{{- define "ctxcloud.gcsCredentialsFile" -}}
{{- printf "%s/credentials.json" (include "ctxcloud.gcsCredentialsDir" .) }}
{{- end }}

{{/* Read-only volumes with storage credentials files, for the service and migration pods. */}}
{{- define "ctxcloud.credentialVolumes" -}}
{{- with .Values.config.gcs.credentialsSecret }}
{{- if .name }}
- name: gcs-credentials
  secret:
    secretName: {{ .name }}
    items:
      - key: {{ .key }}
        path: credentials.json
    # Readable by the pod's group (securityContext.fsGroup), written by no one.
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}

{{- define "ctxcloud.credentialMounts" -}}
{{- if .Values.config.gcs.credentialsSecret.name }}
- name: gcs-credentials
  mountPath: {{ include "ctxcloud.gcsCredentialsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
The chosen storage backend's required settings, checked at render time: `helm install` stops
with the value to set instead of pods that stop at start-up. A Secret given by
secrets.existingSecret is not visible here, so what it may hold (an Azure connection string)
is taken on trust; the service names anything still missing when it starts.
*/}}
{{- define "ctxcloud.validateStorage" -}}
{{- $backend := .Values.config.storageBackend }}
{{- $external := ne .Values.secrets.existingSecret "" }}
{{- if eq $backend "gcs" }}
{{- if not .Values.config.gcs.bucket }}
{{- fail "config.storageBackend is gcs: set config.gcs.bucket (CTXCLOUD_GCS_BUCKET), the bucket that holds the objects" }}
{{- end }}
{{- end }}
{{- if eq $backend "azure" }}
{{- $azure := .Values.config.azure }}
{{- if not $azure.container }}
{{- fail "config.storageBackend is azure: set config.azure.container (CTXCLOUD_AZURE_CONTAINER), the blob container that holds the objects" }}
{{- end }}
{{- $connectionString := and (not $external) .Values.secrets.azureConnectionString }}
{{- if and $azure.accountUrl $connectionString }}
{{- fail "config.storageBackend is azure: set exactly one of config.azure.accountUrl and secrets.azureConnectionString, not both" }}
{{- end }}
{{- if not (or $azure.accountUrl $connectionString $external) }}
{{- fail "config.storageBackend is azure: set exactly one of config.azure.accountUrl (with an identity or secrets.azureAccountKey) and secrets.azureConnectionString" }}
{{- end }}
{{- if and (not $external) .Values.secrets.azureAccountKey (not $azure.accountUrl) }}
{{- fail "config.storageBackend is azure: secrets.azureAccountKey needs config.azure.accountUrl (a connection string carries its own key)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
secrets.jwtSigningKeys, when given, checked at render time for its shape: a JSON object of
kid → PEM private key, as `ctxcloud keys new-signing-key` prints (a bare PEM, or a PEM whose
line breaks were not escaped as \n, would otherwise stop every pod at start-up). Whether each
key suits config.jwtAlgorithm is left to the service, which names the kid that does not. The
message never repeats the value.
*/}}
{{- define "ctxcloud.validateSigningKeys" -}}
{{- with .Values.secrets.jwtSigningKeys }}
{{- $keys := fromJson . }}
{{- $valid := gt (len $keys) 0 }}
{{- range $kid, $pem := $keys }}
{{- if not (and (kindIs "string" $pem) (contains "-----BEGIN " $pem) (contains "PRIVATE KEY-----" $pem)) }}
{{- $valid = false }}
{{- end }}
{{- end }}
{{- if not $valid }}
{{- fail "secrets.jwtSigningKeys must be a JSON object {\"<kid>\": \"<PEM private key>\", ...} with one key at least, as `ctxcloud keys new-signing-key` prints (give it with --set-file)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The proxy sidecar's image: repository:tag, or repository@digest. */}}
{{- define "ctxcloud.proxy.image" -}}
{{- if .Values.proxy.image.digest }}
{{- printf "%s@%s" .Values.proxy.image.repository .Values.proxy.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.proxy.image.repository .Values.proxy.image.tag }}
{{- end }}
{{- end }}

{{/*
The value of every NGINX_* placeholder of files/nginx.conf.template, as YAML. docker-compose.yml
fills the same placeholders from its environment (with the same defaults as values.yaml).
*/}}
{{- define "ctxcloud.proxy.settings" -}}
{{- $p := .Values.proxy -}}
NGINX_UPSTREAM: "127.0.0.1:8000"
NGINX_WORKER_PROCESSES: {{ $p.workerProcesses | int | toString | quote }}
NGINX_WORKER_CONNECTIONS: {{ $p.workerConnections | int | toString | quote }}
NGINX_WORKER_RLIMIT_NOFILE: {{ mul 2 ($p.workerConnections | int) | toString | quote }}
NGINX_WORKER_SHUTDOWN_TIMEOUT: {{ printf "%ds" (.Values.gunicorn.gracefulTimeout | int) | quote }}
NGINX_REAL_IP_FROM: {{ default "unix:" $p.realIpFrom | quote }}
NGINX_CLIENT_HEADER_TIMEOUT: {{ $p.clientHeaderTimeout | quote }}
NGINX_CLIENT_BODY_TIMEOUT: {{ $p.clientBodyTimeout | quote }}
NGINX_SEND_TIMEOUT: {{ $p.sendTimeout | quote }}
NGINX_KEEPALIVE_TIMEOUT: {{ $p.keepaliveTimeout | quote }}
NGINX_KEEPALIVE_REQUESTS: {{ $p.keepaliveRequests | int | toString | quote }}
NGINX_CLIENT_BODY_BUFFER_SIZE: {{ $p.clientBodyBufferSize | quote }}
NGINX_MAX_JSON_BODY_SIZE: {{ $p.maxJsonBodySize | quote }}
NGINX_MAX_ENTRY_BODY_SIZE: {{ $p.maxEntryBodySize | quote }}
NGINX_PROXY_MAX_TEMP_FILE_SIZE: {{ $p.maxTempFileSize | quote }}
NGINX_CONNECTIONS_PER_ADDRESS: {{ $p.connectionsPerAddress | int | toString | quote }}
NGINX_UPSTREAM_KEEPALIVE: {{ $p.upstreamKeepalive | int | toString | quote }}
NGINX_UPSTREAM_KEEPALIVE_TIMEOUT: {{ $p.upstreamKeepaliveTimeout | quote }}
NGINX_PROXY_CONNECT_TIMEOUT: {{ $p.proxyConnectTimeout | quote }}
NGINX_PROXY_SEND_TIMEOUT: {{ $p.proxySendTimeout | quote }}
NGINX_PROXY_READ_TIMEOUT: {{ $p.proxyReadTimeout | quote }}
{{- end }}

{{/*
nginx.conf: files/nginx.conf.template with each placeholder replaced, as envsubst does for
docker-compose.yml. A placeholder left over (one the settings above lack) fails the render.
*/}}
{{- define "ctxcloud.proxy.conf" -}}
{{- $conf := .Files.Get "files/nginx.conf.template" }}
{{- if not $conf }}
{{- fail "files/nginx.conf.template is missing from the chart" }}
{{- end }}
{{- range $name, $value := include "ctxcloud.proxy.settings" . | fromYaml }}
{{- $conf = replace (printf "${%s}" $name) (toString $value) $conf }}
{{- end }}
{{- if contains "${NGINX_" $conf }}
{{- fail "files/nginx.conf.template has an NGINX_* placeholder that ctxcloud.proxy.settings does not fill" }}
{{- end }}
{{- $conf }}
{{- end }}

{{/* An exec probe of gunicorn on the pod's loopback (with the proxy, nothing else reaches it). */}}
{{- define "ctxcloud.loopbackProbe" -}}
exec:
  command:
    - python
    - -c
    - {{ printf "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000%s', timeout=%d).status == 200 else 1)" .path (int (.timeout | default 3)) | quote }}
{{- end }}
