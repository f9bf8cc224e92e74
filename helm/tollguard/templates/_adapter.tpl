{{/*
A stateless tollguard process beside the workers (the enforcer, the packer):
a Deployment, a Service for its /metrics and, with the ServiceMonitor on, its
own. Called with a dict:
  root       the chart's context (.)
  component  name suffix and app.kubernetes.io/component label
  values     the component's values: metricsPort, resources, replicas (optional)
  args       the tollguard command line (list)
  env        extra environment (list of EnvVar maps)
*/}}
{{- define "tollguard.adapter" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $tls := $root.Values.kafka.tls }}
{{- $name := printf "%s-%s" (include "tollguard.fullname" $root) .component | trunc 63 | trimSuffix "-" }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "tollguard.commonLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: {{ $v.replicas | default 1 }}
  selector:
    matchLabels:
      {{- include "tollguard.baseSelectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
  template:
    metadata:
      labels:
        {{- include "tollguard.commonLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
    spec:
      serviceAccountName: {{ include "tollguard.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ toJson .args }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          ports:
            - name: metrics
              containerPort: {{ $v.metricsPort }}
              protocol: TCP
          env:
            {{- include "tollguard.kafkaEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            - name: TOLLGUARD_WEB_HOST
              value: "0.0.0.0"
            - name: TOLLGUARD_WEB_PORT
              value: {{ $v.metricsPort | quote }}
            - name: TOLLGUARD_LOG_LEVEL
              value: {{ $root.Values.settings.logLevel | quote }}
          readinessProbe:
            httpGet:
              path: /metrics
              port: metrics
            periodSeconds: 10
          livenessProbe:
            httpGet:
              path: /metrics
              port: metrics
            periodSeconds: 20
            failureThreshold: 6
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $tls.existingSecret }}
            - name: kafka-tls
              mountPath: /etc/tollguard/kafka-tls
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
        {{- if $tls.existingSecret }}
        - name: kafka-tls
          secret:
            secretName: {{ $tls.existingSecret }}
            defaultMode: 0440
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "tollguard.commonLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  selector:
    {{- include "tollguard.baseSelectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  ports:
    - name: metrics
      port: {{ $v.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- if $root.Values.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $name }}
  labels:
    {{- include "tollguard.commonLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $root.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "tollguard.baseSelectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
  namespaceSelector:
    matchNames: [{{ $root.Release.Namespace | quote }}]
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $root.Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ $root.Values.metrics.serviceMonitor.scrapeTimeout }}
{{- end }}
{{- end }}
