{{/* The release name, followed by the chart's unless it holds it already (as Helm's own
     scaffold does): release "emolens" names its gateway emolens-gateway, not emolens-emolens-gateway. */}}
{{- define "emolens.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "emolens.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "emolens.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "emolens.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "emolens.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "emolens.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Settings from the ConfigMap, secrets from existing Secrets when given. */}}
{{- define "emolens.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "emolens.fullname" . }}-settings
env:
  - name: EMOLENS_DB
    {{- if .Values.database.existingSecret }}
    valueFrom:
      secretKeyRef:
        name: {{ .Values.database.existingSecret }}
        key: db-url
    {{- else }}
    value: {{ .Values.database.url | quote }}
    {{- end }}
  - name: EMOLENS_LIVE
    {{- if .Values.redis.existingSecret }}
    valueFrom:
      secretKeyRef:
        name: {{ .Values.redis.existingSecret }}
        key: redis-url
    {{- else }}
    value: {{ .Values.redis.url | quote }}
    {{- end }}
{{- end -}}

{{- define "emolens.podSpecCommon" -}}
serviceAccountName: {{ include "emolens.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "emolens.grpcProbes" -}}
{{- /* readiness: the dependencies answer (no traffic while waiting, no restart); liveness: the
       main loop turns (EMOLENS_LIVENESS_TIMEOUT_S), so a service waiting out an outage is not
       restarted, a hung one is (emolens.services.loop.Health). */}}
readinessProbe:
  grpc:
    port: {{ .port }}
    service: readiness
  initialDelaySeconds: 5
  periodSeconds: 10
livenessProbe:
  grpc:
    port: {{ .port }}
    service: liveness
  initialDelaySeconds: 20
  periodSeconds: 20
  failureThreshold: 3
{{- end -}}

{{/* A writable /tmp for the read-only root filesystem. */}}
{{- define "emolens.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end -}}
{{- define "emolens.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}
