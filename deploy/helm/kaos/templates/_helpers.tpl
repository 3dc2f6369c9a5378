{{/* The release's name for everything this chart makes, at most 63 characters. */}}
{{- define "kaos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kaos.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kaos.labels" -}}
{{ include "kaos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* What clients are told to dial: the Service's name unless advertisedHost says otherwise. */}}
{{- define "kaos.advertisedHost" -}}
{{- .Values.advertisedHost | default (printf "%s.%s.svc.%s" (include "kaos.fullname" .) .Release.Namespace .Values.clusterDomain) -}}
{{- end -}}

{{/* The broker ids, checked: kaos serves broker N on portStart + 1 + N, which must be a port. */}}
{{- define "kaos.brokerIds" -}}
{{- if not .Values.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required: the Kafka cluster kaos proxies (HOST:PORT[,HOST:PORT...])" -}}
{{- end -}}
{{- if not .Values.kafka.brokerIds -}}
{{- fail "kafka.brokerIds is required: the cluster's broker ids, one Service port each" -}}
{{- end -}}
{{- range .Values.kafka.brokerIds -}}
{{- $port := add $.Values.portStart 1 (int .) -}}
{{- if or (lt (int .) 0) (gt $port 65535) -}}
{{- fail (printf "kafka.brokerIds: broker %v would be served on port %v (portStart + 1 + id), not a TCP port" . $port) -}}
{{- end -}}
{{- if eq (int $port) (int $.Values.adminPort) -}}
{{- fail (printf "kafka.brokerIds: broker %v's port %v is adminPort" . $port) -}}
{{- end -}}
{{- end -}}
{{- toJson .Values.kafka.brokerIds -}}
{{- end -}}
