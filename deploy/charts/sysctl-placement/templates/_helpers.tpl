{{/* The name of every object; the Service name is in the serving certificate. */}}
{{- define "sysctl-placement.fullname" -}}
{{- .Values.fullnameOverride | default "sysctl-placement" -}}
{{- end -}}

{{/* Labels on every object's metadata. */}}
{{- define "sysctl-placement.labels" -}}
app.kubernetes.io/name: sysctl-placement
app.kubernetes.io/part-of: sysctl-placement
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The webhook pods' labels: the Service, PDB, spread and NetworkPolicy select them. */}}
{{- define "sysctl-placement.selectorLabels" -}}
app.kubernetes.io/name: sysctl-placement
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "sysctl-placement.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every container the chart runs. */}}
{{- define "sysctl-placement.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sysctl-placement.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The certs command (self-signed mode), shared by the Job and the CronJob. */}}
{{- define "sysctl-placement.certsArgs" -}}
- certs
- --namespace
- {{ .Release.Namespace }}
- --service
- {{ include "sysctl-placement.fullname" . }}
- --secret
- {{ include "sysctl-placement.fullname" . }}-tls
- --ca-secret
- {{ include "sysctl-placement.fullname" . }}-ca
- --mutating-webhook
- {{ include "sysctl-placement.fullname" . }}
- --validating-webhook
- {{ include "sysctl-placement.fullname" . }}
- --validity
- {{ .Values.certificates.validity }}
- --renew-before
- {{ .Values.certificates.renewBefore }}
{{- end -}}

{{/* Both webhook configurations' namespaceSelector: the values' selector, plus the
namespaces never sent (the control plane's, and the webhook's own so its pods start
while no replica is ready). */}}
{{- define "sysctl-placement.namespaceSelector" -}}
{{- $sel := deepCopy .Values.webhook.namespaceSelector -}}
{{- $exprs := $sel.matchExpressions | default list -}}
{{- $exprs = append $exprs (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" (list "kube-system" "kube-node-lease" .Release.Namespace)) -}}
{{- $_ := set $sel "matchExpressions" $exprs -}}
{{- toYaml $sel -}}
{{- end -}}

{{/* cert-manager's CA injector fills caBundle in cert-manager mode. */}}
{{- define "sysctl-placement.webhookAnnotations" -}}
{{- if eq .Values.certificates.mode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "sysctl-placement.fullname" . }}-serving
{{- end -}}
{{- end -}}
