{{/* The chart's name, for the app.kubernetes.io/name label. */}}
{{- define "driftwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: the release name, with the chart's name added unless it has it. */}}
{{- define "driftwarden.fullname" -}}
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

{{- define "driftwarden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "driftwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "driftwarden.labels" -}}
helm.sh/chart: {{ include "driftwarden.chart" . }}
{{ include "driftwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: driftwarden
{{- end }}

{{- define "driftwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "driftwarden.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "driftwarden.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the daemon's files live in the container. */}}
{{- define "driftwarden.configDir" -}}/etc/driftwarden{{- end }}
{{- define "driftwarden.stateDir" -}}/var/lib/driftwarden{{- end }}
{{- define "driftwarden.tlsDir" -}}kafka-tls{{- end }}
{{- define "driftwarden.webDir" -}}/etc/driftwarden-web{{- end }}

{{/*
The daemon's config.yaml: .Values.config with the keys the chart owns set over it (a deep merge,
so the user's other server, state and kafka keys stay).
*/}}
{{- define "driftwarden.config" -}}
{{- $forced := dict
      "server" (dict "host" "0.0.0.0" "port" (int .Values.service.port))
      "state" (dict "dir" (include "driftwarden.stateDir" .) "store" .Values.state.store) }}
{{- if eq .Values.state.store "s3" }}
{{- $s3 := dict "bucket" .Values.state.s3.bucket "prefix" .Values.state.s3.prefix }}
{{- with .Values.state.s3.endpoint_url }}
{{- $_ := set $s3 "endpoint_url" . }}
{{- end }}
{{- with .Values.state.s3.region }}
{{- $_ := set $s3 "region" . }}
{{- end }}
{{- $_ := set $forced.state "s3" $s3 }}
{{- end }}
{{- with .Values.webConfig.existingSecret }}
{{- $_ := set $forced.server "web_config_file" (printf "%s/%s" (include "driftwarden.webDir" $) $.Values.webConfig.key) }}
{{- end }}
{{- if .Values.kafka.tls.enabled }}
{{- $tls := printf "%s/%s" (include "driftwarden.configDir" .) (include "driftwarden.tlsDir" .) }}
{{- $kafka := dict "ssl_cafile" (printf "%s/ca.crt" $tls) }}
{{- if .Values.kafka.tls.clientCertificate }}
{{- $_ := set $kafka "ssl_certfile" (printf "%s/tls.crt" $tls) }}
{{- $_ := set $kafka "ssl_keyfile" (printf "%s/tls.key" $tls) }}
{{- end }}
{{- $_ := set $forced "kafka" $kafka }}
{{- end }}
{{- mustMergeOverwrite (deepCopy (.Values.config | default dict)) $forced | toYaml }}
{{- end }}

{{/* Settings that cannot work together fail the render with the reason. */}}
{{- define "driftwarden.validate" -}}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "persistence.enabled with replicaCount %d: a ReadWriteOnce volume holds one daemon's state (checkpoints with their Kafka offsets, the alert outbox, the job ledger) and two daemons must never share it. Use replicaCount 1 with persistence, or persistence.enabled=false with state.store s3 (the partitions' state in a bucket every replica reaches) to scale out." (int .Values.replicaCount)) }}
{{- end }}
{{- $daemonState := .Values.config.state | default dict }}
{{- if or (hasKey $daemonState "store") (hasKey $daemonState "s3") }}
{{- fail "config.state.store and config.state.s3 are the chart's: set state.store and state.s3 instead (the schema checks them with replicaCount)." }}
{{- end }}
{{- if and .Values.state.credentials.existingSecret (ne .Values.state.store "s3") }}
{{- fail (printf "state.credentials.existingSecret needs state.store s3 (got %s): the keys would not be used." .Values.state.store) }}
{{- end }}
{{- $protocol := (.Values.config.kafka | default dict).security_protocol | default "PLAINTEXT" }}
{{- if and .Values.kafka.tls.enabled (not (has $protocol (list "SSL" "SASL_SSL"))) }}
{{- fail (printf "kafka.tls.enabled needs config.kafka.security_protocol SSL or SASL_SSL (got %s): the certificates would not be used." $protocol) }}
{{- end }}
{{- if and .Values.webConfig.tls (not .Values.webConfig.existingSecret) }}
{{- fail "webConfig.tls needs webConfig.existingSecret: the Secret holding web.yml with its tls_server_config." }}
{{- end }}
{{- if and .Values.kafka.tls.enabled (not .Values.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.enabled needs kafka.tls.existingSecret: the Secret holding ca.crt (and tls.crt, tls.key)." }}
{{- end }}
{{- if and .Values.kafka.sasl.existingSecret (not (hasPrefix "SASL_" $protocol)) }}
{{- fail (printf "kafka.sasl.existingSecret needs config.kafka.security_protocol SASL_PLAINTEXT or SASL_SSL (got %s): the password would not be used." $protocol) }}
{{- end }}
{{- end }}
