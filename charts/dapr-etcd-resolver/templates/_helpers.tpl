{{/*
Names are the kustomize kit's, not derived from the release name: the Secrets, the CoreDNS
stanza, the alerts and the docs name these objects, and a cluster runs one release.
*/}}

{{/*
Labels Helm adds to every object's metadata (never to selectors or pod templates: those stay
the kit's, so switching between the kit and the chart keeps the immutable selectors).
tests/deploy/test_helm_chart.py strips exactly these keys when comparing with the kit.
*/}}
{{- define "dapr-etcd-resolver.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The kit's label on every object (deploy/base/kustomization.yaml "labels"), plus Helm's. */}}
{{- define "dapr-etcd-resolver.labels" -}}
app.kubernetes.io/part-of: dapr-etcd-resolver
{{ include "dapr-etcd-resolver.helmLabels" . }}
{{- end }}

{{- define "dapr-etcd-resolver.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The etcd endpoints as the resolver reads them (DAPR_NR_ETCD_ENDPOINTS): comma-separated. */}}
{{- define "dapr-etcd-resolver.etcdEndpoints" -}}
{{ join "," .Values.etcd.endpoints }}
{{- end }}

{{/* The DNS bridge's endpoints: the gRPC proxy when it is enabled and routes the bridge. */}}
{{- define "dapr-etcd-resolver.dnsBridgeEtcdEndpoints" -}}
{{- if and .Values.etcdProxy.enabled .Values.etcdProxy.dnsBridgeThroughProxy -}}
https://etcd-grpc-proxy.{{ .Release.Namespace }}.svc:2379
{{- else -}}
{{ include "dapr-etcd-resolver.etcdEndpoints" . }}
{{- end }}
{{- end }}

{{/*
The --config file both roles read (the kit's overlays/cluster-N/config.yaml): the TLS paths
where the Secret is mounted, then the keys of .Values.config that are set.
*/}}
{{- define "dapr-etcd-resolver.configFile" -}}
{{- $c := .Values.config -}}
{{- $file := dict "etcdCACert" "/etc/etcd-tls/ca.crt" "etcdClientCert" "/etc/etcd-tls/tls.crt" "etcdClientKey" "/etc/etcd-tls/tls.key" "policy" $c.policy -}}
{{- with $c.failoverOrder }}{{ $_ := set $file "failoverOrder" (join "," .) }}{{ end -}}
{{- with $c.clusterWeights }}{{ $_ := set $file "clusterWeights" . }}{{ end -}}
{{- with $c.policies }}{{ $_ := set $file "policies" . }}{{ end -}}
{{- with $c.clusterCIDRs }}{{ $_ := set $file "clusterCIDRs" (join "," .) }}{{ end -}}
{{- range $key := list "staleAfter" "dnsTTL" "prefix" "etcdTimeout" "fallback" "template" "clusterDomain" }}
{{- with get $c $key }}{{ $_ := set $file $key . }}{{ end -}}
{{- end -}}
{{ toYaml $file }}
{{- end }}

{{/*
Generated ConfigMaps carry a hash of their content in their name, as kustomize's
configMapGenerator does: a changed policy is a new ConfigMap, so the Deployments roll.
*/}}
{{- define "dapr-etcd-resolver.configMapName" -}}
dapr-etcd-resolver-config-{{ include "dapr-etcd-resolver.configFile" . | sha256sum | trunc 10 }}
{{- end }}

{{- define "dapr-etcd-resolver.proxyEndpoints" -}}
{{- if .Values.etcdProxy.endpoints -}}
{{ join "," .Values.etcdProxy.endpoints }}
{{- else -}}
{{- $hosts := list -}}
{{- range .Values.etcd.endpoints }}{{ $hosts = append $hosts (regexReplaceAll "^https?://" . "") }}{{ end -}}
{{ join "," $hosts }}
{{- end }}
{{- end }}

{{- define "dapr-etcd-resolver.proxyConfigMapName" -}}
etcd-grpc-proxy-{{ include "dapr-etcd-resolver.proxyEndpoints" . | sha256sum | trunc 10 }}
{{- end }}

{{/*
What the schema cannot say (it sees one value at a time): rules across values. Included by
every template, so `helm template` and `helm lint` refuse them before rendering anything.
*/}}
{{- define "dapr-etcd-resolver.validate" -}}
{{- if has .Values.clusterName .Values.config.failoverOrder -}}
{{- fail (printf "config.failoverOrder lists clusterName %q itself: list the other clusters (this one is always tried first)" .Values.clusterName) -}}
{{- end -}}
{{- end }}

{{/* Scheduling values shared by the Deployments; nothing when they are empty (as in the kit). */}}
{{- define "dapr-etcd-resolver.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}
