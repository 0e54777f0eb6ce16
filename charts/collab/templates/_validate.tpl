{{/*
Bad combinations of values fail at render time with a message that says what to change
(the bitnami redis.validateValues pattern). Each check returns a message or nothing.
*/}}
{{- define "collab.validateValues" -}}
{{- $messages := list -}}
{{- $messages = append $messages (include "collab.validateValues.redis" .) -}}
{{- $messages = append $messages (include "collab.validateValues.operatorCrd" .) -}}
{{- $messages = append $messages (include "collab.validateValues.gatewayPool" .) -}}
{{- $messages = append $messages (include "collab.validateValues.httpRoute" .) -}}
{{- $messages = append $messages (include "collab.validateValues.presencePartitions" .) -}}
{{- $messages = without $messages "" -}}
{{- if $messages -}}
{{- printf "\nVALUES VALIDATION:\n%s" (join "\n" $messages) | fail -}}
{{- end -}}
{{- end -}}

{{/* Exactly one Redis: the bundled one, or an external URL (given or in a Secret). */}}
{{- define "collab.validateValues.redis" -}}
{{- $external := or .Values.redis.url .Values.redis.existingSecret -}}
{{- if and .Values.redis.bundled.enabled $external -}}
redis: both the bundled Redis (redis.bundled.enabled=true) and an external one (redis.url or redis.existingSecret) are set; set redis.bundled.enabled=false to use the external Redis, or unset redis.url and redis.existingSecret.
{{- else if and (not .Values.redis.bundled.enabled) (not $external) -}}
redis: no Redis: redis.bundled.enabled=false needs redis.url or redis.existingSecret (a Secret with the URL under redis.existingSecretKey).
{{- else if and .Values.redis.url .Values.redis.existingSecret -}}
redis: set either redis.url or redis.existingSecret, not both.
{{- end -}}
{{- end -}}

{{/*
The operator watches GatewayPools: their API must exist. Against a live cluster (the
namespace's kube-root-ca.crt ConfigMap can be looked up) the check always runs; helm
install puts crds/ in before it builds the capabilities, so only --skip-crds without the
CRD fails. Offline (helm template) it runs when operator.requireCrd is true.
*/}}
{{- define "collab.validateValues.operatorCrd" -}}
{{- if and .Values.operator.enabled (not (.Capabilities.APIVersions.Has "collab.gremlins.dev/v1alpha1/GatewayPool")) -}}
{{- $live := lookup "v1" "ConfigMap" .Release.Namespace "kube-root-ca.crt" -}}
{{- if or .Values.operator.requireCrd $live -}}
operator: operator.enabled=true needs the GatewayPool CRD (gatewaypools.collab.gremlins.dev), but the API collab.gremlins.dev/v1alpha1 is not served. Install it with `kubectl apply -f charts/collab/crds/` (helm install skips crds/ with --skip-crds), or set operator.enabled=false. With helm template, pass --api-versions collab.gremlins.dev/v1alpha1/GatewayPool.
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "collab.validateValues.gatewayPool" -}}
{{- $pool := .Values.operator.gatewayPool -}}
{{- if and .Values.operator.enabled (gt (int $pool.minReplicas) (int $pool.maxReplicas)) -}}
operator: operator.gatewayPool.minReplicas ({{ $pool.minReplicas }}) is greater than operator.gatewayPool.maxReplicas ({{ $pool.maxReplicas }}).
{{- end -}}
{{- end -}}

{{- define "collab.validateValues.httpRoute" -}}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) -}}
httpRoute: httpRoute.enabled=true needs httpRoute.parentRefs (the Gateway to attach to).
{{- end -}}
{{- end -}}

{{/* A presence partition owns at least one ingress shard. */}}
{{- define "collab.validateValues.presencePartitions" -}}
{{- if gt (int .Values.presence.partitions) (int .Values.ingressShards) -}}
presence: presence.partitions ({{ .Values.presence.partitions }}) is greater than ingressShards ({{ .Values.ingressShards }}); a partition owns the ingress shards s with s % partitions == its index, so raise ingressShards (the same in every process) or lower presence.partitions.
{{- end -}}
{{- end -}}
