{{/* The app.kubernetes.io/name label: nameOverride, else the chart's name. */}}
{{- define "sysctl-placement.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of every object; the Service name is in the serving certificate. */}}
{{- define "sysctl-placement.fullname" -}}
{{- .Values.fullnameOverride | default "sysctl-placement" -}}
{{- end -}}

{{/* Labels on every object's metadata: the standard app.kubernetes.io/* ones and
helm.sh/chart. Pod templates and selectors carry selectorLabels only: a Deployment's
selector is immutable, so a label that changes (version, chart) or one kustomize has
not (instance) must stay out of it. */}}
{{- define "sysctl-placement.labels" -}}
app.kubernetes.io/name: {{ include "sysctl-placement.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sysctl-placement
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The webhook pods' labels: the Service, PDB, spread and NetworkPolicy select them. */}}
{{- define "sysctl-placement.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sysctl-placement.name" . }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/* The metadata of the Jobs' pods (certs hooks, renewal CronJob, uninstall hook),
called with (dict "root" $ "component" NAME): name and component labels, then
hookPodLabels and hookPodAnnotations (e.g. a mesh's sidecar injection turned off, or
a Job never completes). */}}
{{- define "sysctl-placement.jobPodMetadata" -}}
{{- $root := .root -}}
labels:
  app.kubernetes.io/name: {{ include "sysctl-placement.name" $root }}
  app.kubernetes.io/component: {{ .component }}
  {{- with omit $root.Values.hookPodLabels "app.kubernetes.io/name" "app.kubernetes.io/component" }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $root.Values.hookPodAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "sysctl-placement.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* What every pod the chart runs (the webhook's and the Jobs') shares: the image's
pull Secrets and the nodes it may run on. affinity and topologySpreadConstraints are
the webhook's alone: they spread its replicas. */}}
{{- define "sysctl-placement.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The restricted Pod Security Standard by default, for every pod and container the
chart runs; podSecurityContext and containerSecurityContext override it field by
field (a field set to null is dropped, e.g. runAsUser on OpenShift). */}}
{{- define "sysctl-placement.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "sysctl-placement.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* The spec of the Jobs' pods (certs hooks, renewal CronJob, uninstall hook): one
container of the project's image, run with args; called with (dict "root" $
"serviceAccount" NAME "container" NAME "args" LIST). */}}
{{- define "sysctl-placement.jobPodSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ .serviceAccount }}
restartPolicy: {{ .restartPolicy | default "OnFailure" }}
{{- with include "sysctl-placement.podPlacement" $root | trim }}
{{ . }}
{{- end }}
securityContext:
  {{- include "sysctl-placement.podSecurityContext" $root | nindent 2 }}
containers:
  - name: {{ .container }}
    image: {{ include "sysctl-placement.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    resources:
      requests: {cpu: 10m, memory: 32Mi}
      limits: {memory: 64Mi}
    securityContext:
      {{- include "sysctl-placement.containerSecurityContext" $root | nindent 6 }}
{{- end -}}

{{/* The certs pods' spec (self-signed mode), shared by the pre-install Job, the
post-install Job and the CronJob; called with (dict "root" $ "serviceAccount" NAME
"secretsOnly" BOOL). secretsOnly passes both webhook configuration names empty: certs
then makes or keeps the two Secrets and neither reads nor patches a webhook
configuration, which a pre-install hook has neither the objects nor the RBAC for. So
does every run with admission.webhookConfigurations=false: there are none to patch,
and certs refuses a configuration it cannot find. */}}
{{- define "sysctl-placement.certsPodSpec" -}}
{{- $root := .root -}}
{{- $fullname := include "sysctl-placement.fullname" $root -}}
{{- $webhooks := ternary "" $fullname (or .secretsOnly (not $root.Values.admission.webhookConfigurations)) -}}
{{- $args := list
  "certs"
  "--namespace" $root.Release.Namespace
  "--service" $fullname
  "--secret" (printf "%s-tls" $fullname)
  "--ca-secret" (printf "%s-ca" $fullname)
  "--mutating-webhook" $webhooks
  "--validating-webhook" $webhooks
  "--validity" $root.Values.certificates.validity
  "--renew-before" $root.Values.certificates.renewBefore -}}
{{- include "sysctl-placement.jobPodSpec" (dict "root" $root "serviceAccount" .serviceAccount "container" "certs" "args" $args) -}}
{{- end -}}

{{/* What certs needs in the release namespace: create the two Secrets (RBAC cannot
restrict create by name; the Role is namespaced) and read and update them by name.
Shared by the certs Role and the pre-install hook's Role. */}}
{{- define "sysctl-placement.certsSecretRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "sysctl-placement.fullname" . }}-tls, {{ include "sysctl-placement.fullname" . }}-ca]
  verbs: [get, update]
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

{{/* What `uninstall-cleanup --admission-policies` needs: get and delete on the six
admission policies and bindings serve --admission=policy applies, by name. They are
cluster-scoped; each is read by name (its label checked) and deleted by name, since a
delete by label (deletecollection) cannot be restricted to them. Their names are fixed
in serve, whatever the release's. Shared by the post-delete hook's ClusterRole and the
stale-policies hook's. */}}
{{- define "sysctl-placement.admissionPolicyCleanupRules" -}}
- apiGroups: [admissionregistration.k8s.io]
  resources: [mutatingadmissionpolicies, mutatingadmissionpolicybindings]
  resourceNames: [sysctl-placement]
  verbs: [get, delete]
- apiGroups: [admissionregistration.k8s.io]
  resources: [validatingadmissionpolicies, validatingadmissionpolicybindings]
  resourceNames: [sysctl-placement, sysctl-placement-warnings]
  verbs: [get, delete]
{{- end -}}
