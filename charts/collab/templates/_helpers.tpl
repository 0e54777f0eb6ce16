{{/*
Names. We truncate at 63 chars because some Kubernetes name fields are limited to this
(by the DNS naming spec).
*/}}
{{- define "collab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "collab.fullname" -}}
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

{{/* The name of one component's resources: (dict "root" $ "component" "gateway"). */}}
{{- define "collab.componentName" -}}
{{- printf "%s-%s" (include "collab.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "collab.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: name, instance and component only, because a Deployment's selector is
immutable. (dict "root" $ "component" "gateway")
*/}}
{{- define "collab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "collab.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "collab.labels" -}}
helm.sh/chart: {{ include "collab.chart" .root }}
{{ include "collab.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: collab
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of the release's resources that belong to no component (Secrets, dashboards). */}}
{{- define "collab.releaseLabels" -}}
helm.sh/chart: {{ include "collab.chart" . }}
app.kubernetes.io/name: {{ include "collab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: collab
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The collab image: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "collab.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key that hold the JWT secret. */}}
{{- define "collab.jwtSecretName" -}}
{{- default (printf "%s-jwt" (include "collab.fullname" .)) .Values.jwt.existingSecret -}}
{{- end -}}

{{- define "collab.jwtSecretKey" -}}
{{- ternary .Values.jwt.existingSecretKey "jwt-secret" (ne .Values.jwt.existingSecret "") -}}
{{- end -}}

{{/* The REDIS_URL variable: the bundled Redis' Service, or the external URL's Secret. */}}
{{- define "collab.redisUrlEnv" -}}
- name: REDIS_URL
{{- if .Values.redis.bundled.enabled }}
  value: {{ printf "redis://%s:6379/0" (include "collab.componentName" (dict "root" . "component" "redis")) | quote }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ default (printf "%s-redis-url" (include "collab.fullname" .)) .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- end }}
{{- end -}}

{{/*
A service's settings as COLLAB_<SERVICE>_<NAME> variables: (dict "prefix" "COLLAB_GATEWAY_"
"settings" .Values.gateway.settings). camelCase keys become upper snake case; strings go as
they are, everything else as JSON (pydantic-settings parses lists from JSON; numbers keep
their digits: toJson prints 1048576, where toString would print 1.048576e+06).
*/}}
{{- define "collab.settingsEnv" -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .settings }}
- name: {{ printf "%s%s" $prefix ($key | snakecase | upper) }}
  value: {{ ternary $value ($value | toJson) (kindIs "string" $value) | quote }}
{{- end }}
{{- end -}}

{{/* Pod identity for traces and logs (the downward API). */}}
{{- define "collab.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/* OTEL_* variables, only when an endpoint is set (tracing is off otherwise). */}}
{{- define "collab.otelEnv" -}}
{{- with .root.Values.otel }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- if .samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
{{- $attributes := printf "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),k8s.deployment.name=%s" $.workload }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ ternary (printf "%s,%s" .resourceAttributes $attributes) $attributes (ne .resourceAttributes "") | quote }}
{{- if .headersSecret }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ .headersSecret }}
      key: headers
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Default spread of a multi-replica component: across zones, then across nodes, never
blocking scheduling. (dict "root" $ "component" "gateway" "custom" .Values.gateway.topologySpreadConstraints);
a StatefulSet passes "revisionLabel" "controller-revision-hash" (its pods carry no
pod-template-hash), so that the spread counts only pods of the current revision.
*/}}
{{- define "collab.topologySpread" -}}
{{- if .custom -}}
{{ toYaml .custom }}
{{- else -}}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- maxSkew: 1
  topologyKey: {{ $key }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "collab.selectorLabels" (dict "root" $.root "component" $.component) | nindent 6 }}
  matchLabelKeys: [{{ $.revisionLabel | default "pod-template-hash" }}]
{{- end }}
{{- end -}}
{{- end -}}

{{/* The /tmp emptyDir, the only writable path of a collab container. */}}
{{- define "collab.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{/*
Gateway termination: preStop sleep, then SIGTERM starts the drain (reconnects spread over
drainSeconds), then uvicorn's graceful shutdown (5 s, collab_gateway/__main__.py), plus a
margin. The operator waits as long before it removes another gateway.
*/}}
{{- define "collab.gateway.terminationGracePeriodSeconds" -}}
{{- $drain := ternary .Values.gateway.settings.drainSeconds 10 (hasKey .Values.gateway.settings "drainSeconds") | float64 | ceil | int -}}
{{- add .Values.gateway.preStopSleepSeconds $drain 5 .Values.gateway.terminationMarginSeconds -}}
{{- end -}}
