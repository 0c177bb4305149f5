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
