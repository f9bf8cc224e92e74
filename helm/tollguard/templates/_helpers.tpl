{{/* Chart name. */}}
{{- define "tollguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name, also the Prometheus job label (ServiceMonitor). */}}
{{- define "tollguard.fullname" -}}
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

{{- define "tollguard.baseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "tollguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The worker StatefulSet's pods. */}}
{{- define "tollguard.selectorLabels" -}}
{{ include "tollguard.baseSelectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{/* Labels of every object, without a component. */}}
{{- define "tollguard.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tollguard.baseSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tollguard
{{- end }}

{{- define "tollguard.labels" -}}
{{ include "tollguard.commonLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "tollguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tollguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tollguard.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "tollguard.fullname" .)) .Values.rules.existingConfigMap }}
{{- end }}

{{/* Rule packs of the chart's ConfigMap: files/rules/*.yaml, then values. */}}
{{- define "tollguard.rulePacks" -}}
{{- $packs := dict }}
{{- range $path, $_ := .Files.Glob "files/rules/*.yaml" }}
{{- $_ := set $packs (base $path) ($.Files.Get $path) }}
{{- end }}
{{- range $name, $content := .Values.rules.packs }}
{{- $_ := set $packs $name $content }}
{{- end }}
{{- toYaml $packs }}
{{- end }}

{{/* kafka://h1:p1;kafka://h2:p2, the form Faust and tollguard both accept. */}}
{{- define "tollguard.brokerUrl" -}}
{{- $urls := list }}
{{- range .Values.kafka.bootstrapServers }}
{{- $urls = append $urls (printf "kafka://%s" .) }}
{{- end }}
{{- join ";" $urls }}
{{- end }}

{{/* PromQL label matchers selecting this release's workers. */}}
{{- define "tollguard.promSelector" -}}
{{- default (printf "job=%q" (include "tollguard.fullname" .)) .Values.metrics.prometheusRule.selector }}
{{- end }}

{{/* The same for an adapter's series; called with (list $ "enforcer" | "packer"). */}}
{{- define "tollguard.adapterPromSelector" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $job := printf "job=%q" (printf "%s-%s" (include "tollguard.fullname" $root) $component | trunc 63 | trimSuffix "-") }}
{{- default $job (get $root.Values.metrics.prometheusRule (printf "%sSelector" $component)) }}
{{- end }}

{{/* Kafka connection, topics and security: shared by the worker and the enforcer. */}}
{{- define "tollguard.kafkaEnv" -}}
- name: TOLLGUARD_BROKER
  value: {{ include "tollguard.brokerUrl" . | quote }}
- name: TOLLGUARD_APP_ID
  value: {{ .Values.appId | quote }}
- name: TOLLGUARD_TOPIC_EVENTS
  value: {{ .Values.topics.events | quote }}
- name: TOLLGUARD_TOPIC_CONTROL
  value: {{ .Values.topics.control | quote }}
- name: TOLLGUARD_TOPIC_BLOCKS
  value: {{ .Values.topics.blocks | quote }}
- name: TOLLGUARD_TOPIC_RULES
  value: {{ .Values.topics.rules | quote }}
- name: TOLLGUARD_TOPIC_DEADLETTER
  value: {{ .Values.topics.deadletter | quote }}
{{- with .Values.topics.state }}
- name: TOLLGUARD_TOPIC_STATE
  value: {{ . | quote }}
{{- end }}
- name: TOLLGUARD_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- $sasl := .Values.kafka.sasl }}
{{- $tls := .Values.kafka.tls }}
{{- if $sasl.mechanism }}
- name: TOLLGUARD_SASL_MECHANISM
  value: {{ $sasl.mechanism | quote }}
- name: TOLLGUARD_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with kafka.sasl.mechanism" $sasl.existingSecret }}
      key: {{ $sasl.usernameKey }}
- name: TOLLGUARD_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $sasl.existingSecret }}
      key: {{ $sasl.passwordKey }}
{{- end }}
{{- if $tls.existingSecret }}
- name: TOLLGUARD_SSL_CAFILE
  value: "/etc/tollguard/kafka-tls/{{ $tls.caKey }}"
{{- if $tls.certKey }}
- name: TOLLGUARD_SSL_CERTFILE
  value: "/etc/tollguard/kafka-tls/{{ $tls.certKey }}"
- name: TOLLGUARD_SSL_KEYFILE
  value: "/etc/tollguard/kafka-tls/{{ required "kafka.tls.keyKey is required with kafka.tls.certKey" $tls.keyKey }}"
{{- end }}
{{- end }}
{{- end }}
