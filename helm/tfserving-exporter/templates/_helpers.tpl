{{/*
Names and labels. Kubernetes names are limited to 63 characters.
*/}}
{{- define "tfserving-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name, followed by the chart name unless the release name already
contains it.
*/}}
{{- define "tfserving-exporter.fullname" -}}
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

{{/*
The full name with a suffix, still within 63 characters: (list $ctx "golden").
*/}}
{{- define "tfserving-exporter.suffixedName" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $base := include "tfserving-exporter.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{- define "tfserving-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tfserving-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tfserving-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tfserving-exporter.labels" -}}
helm.sh/chart: {{ include "tfserving-exporter.chart" . }}
{{ include "tfserving-exporter.selectorLabels" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tfserving-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tfserving-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tfserving-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Object names.
*/}}
{{- define "tfserving-exporter.configMapName" -}}
{{- include "tfserving-exporter.fullname" . -}}
{{- end -}}

{{- define "tfserving-exporter.goldenConfigMapName" -}}
{{- include "tfserving-exporter.suffixedName" (list . "golden") -}}
{{- end -}}

{{- define "tfserving-exporter.tfservingConfigMapName" -}}
{{- include "tfserving-exporter.suffixedName" (list . "tfserving") -}}
{{- end -}}

{{- define "tfserving-exporter.image" -}}
{{- $image := index . 0 -}}
{{- $defaultTag := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $defaultTag $image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{- define "tfserving-exporter.servingMode" -}}
{{- if eq .Values.mode "serving" }}true{{ end -}}
{{- end -}}

{{- define "tfserving-exporter.fleetMode" -}}
{{- if eq .Values.mode "fleet" }}true{{ end -}}
{{- end -}}

{{/*
The chart deploys pods of its own: TF Serving with the sidecar (serving) or the fleet exporter
(fleet). In sidecar-only mode the pods are the user's.
*/}}
{{- define "tfserving-exporter.ownPods" -}}
{{- if or (include "tfserving-exporter.servingMode" .) (include "tfserving-exporter.fleetMode" .) }}true{{ end -}}
{{- end -}}

{{/*
The pods the exporter runs in: the chart's TF Serving pods (serving mode), the chart's fleet
exporter pods (fleet mode) or the user's pods (sidecar-only mode, `sidecarOnly.podSelector`,
required). Rendered as matchLabels content.
Takes (dict "ctx" $ "what" "<the object that needs it>").
*/}}
{{- define "tfserving-exporter.podSelectorLabels" -}}
{{- $ctx := .ctx -}}
{{- if include "tfserving-exporter.ownPods" $ctx -}}
{{ include "tfserving-exporter.selectorLabels" $ctx }}
{{- else -}}
{{- if not $ctx.Values.sidecarOnly.podSelector -}}
{{- fail (printf "sidecarOnly.podSelector is required in sidecar-only mode for %s: set the labels of your TF Serving pods, e.g. --set sidecarOnly.podSelector.app=my-tfserving" .what) -}}
{{- end -}}
{{ toYaml $ctx.Values.sidecarOnly.podSelector }}
{{- end -}}
{{- end -}}

{{/*
Exporter configuration
----------------------
Settings the chart passes as flags, so that they follow the pod's layout. Setting them in
`exporter.config` as well would be silently overridden; the chart refuses it instead.
This is the one list: scripts/sync_chart_files.py reads it for values.schema.json, and a test
checks that it names exactly the settings `tfserving-exporter.exporterArgs` passes as flags.
*/}}
{{- define "tfserving-exporter.flagOwnedSettings" -}}
tfserving.grpc_address: exporter.tfserving.grpcAddress
tfserving.rest_address: exporter.tfserving.restAddress
tfserving.metrics_path: exporter.nativeCollector.metricsPath
tfserving.model_config_file: tfserving.models (serving mode) or sidecarOnly.modelConfig
collectors.native.enabled: exporter.nativeCollector.enabled
collectors.native.passthrough: exporter.nativeCollector.passthrough
web.listen_address: exporter.port
web.telemetry_path: exporter.telemetryPath
canary.golden_dir: canary.goldenSets, canary.existingConfigMap or canary.volume
probe.allowed_targets: fleet.allowedTargets
probe.rest_port: fleet.restPort
fleet.max_targets: fleet.maxTargets
fleet.target_expiry: fleet.targetExpiry
tfserving.grpc_tls.enabled: exporter.tfserving.grpcTls.enabled
tfserving.grpc_tls.ca_file: exporter.tfserving.grpcTls.secretName
tfserving.grpc_tls.cert_file: exporter.tfserving.grpcTls.clientCertificate
tfserving.grpc_tls.key_file: exporter.tfserving.grpcTls.clientCertificate
tfserving.grpc_tls.server_name: exporter.tfserving.grpcTls.serverName
web.config_file: exporter.web.tls and exporter.web.basicAuth
{{- end -}}

{{- define "tfserving-exporter.configYaml" -}}
{{- /* A copy: the modules merged in below must not change .Values, read again by later includes. */ -}}
{{- $config := deepCopy (.Values.exporter.config | default dict) -}}
{{- range $setting, $value := include "tfserving-exporter.flagOwnedSettings" . | fromYaml -}}
{{- $parts := splitList "." $setting -}}
{{- $parent := $config -}}
{{- range initial $parts -}}
{{- if kindIs "map" $parent }}{{ $parent = index $parent . }}{{ end -}}
{{- end -}}
{{- if and (kindIs "map" $parent) (hasKey $parent (last $parts)) -}}
{{- fail (printf "exporter.config.%s is set by the chart with a command-line flag: set %s instead" $setting $value) -}}
{{- end -}}
{{- end -}}
{{- if and (include "tfserving-exporter.fleetMode" .) .Values.fleet.modules -}}
{{- $fleet := get $config "fleet" | default dict -}}
{{- $modules := get $fleet "modules" | default dict -}}
{{- range $name, $module := .Values.fleet.modules -}}
{{- if hasKey $modules $name -}}
{{- fail (printf "fleet.modules.%s is also defined in exporter.config.fleet.modules: define each module in one place" $name) -}}
{{- end -}}
{{- $_ := set $modules $name $module -}}
{{- end -}}
{{- $_ := set $fleet "modules" $modules -}}
{{- $_ := set $config "fleet" $fleet -}}
{{- end -}}
{{- if $config -}}
{{- toYaml $config -}}
{{- else -}}
# All settings at their defaults; see the exporter's README, "Configuration".
{}
{{- end -}}
{{- end -}}

{{- define "tfserving-exporter.goldenSource" -}}
{{- $sources := list -}}
{{- if .Values.canary.goldenSets }}{{ $sources = append $sources "canary.goldenSets" }}{{ end -}}
{{- if .Values.canary.existingConfigMap }}{{ $sources = append $sources "canary.existingConfigMap" }}{{ end -}}
{{- if .Values.canary.volume }}{{ $sources = append $sources "canary.volume" }}{{ end -}}
{{- if gt (len $sources) 1 -}}
{{- fail (printf "golden sets come from one source at most, got %s" (join ", " $sources)) -}}
{{- end -}}
{{- first $sources | default "" -}}
{{- end -}}

{{/*
The golden files of canary.goldenSets as ConfigMap data: file name -> JSON text.
*/}}
{{- define "tfserving-exporter.goldenData" -}}
{{- $data := dict -}}
{{- $total := 0 -}}
{{- range $file, $content := .Values.canary.goldenSets -}}
{{- $text := ternary $content (toPrettyJson $content) (kindIs "string" $content) -}}
{{- $_ := set $data $file $text -}}
{{- $total = add $total (len $text) -}}
{{- end -}}
{{- if gt (int $total) 1000000 -}}
{{- fail (printf "canary.goldenSets holds %d bytes, more than a ConfigMap can (1 MiB): put the golden files in a ConfigMap of their own (canary.existingConfigMap) or a volume (canary.volume)" (int $total)) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/*
Sidecar templates
-----------------
`tfserving-exporter.sidecarContainer`, `tfserving-exporter.sidecarVolumes` and
`tfserving-exporter.sidecarPodAnnotations` take this chart's context. From a chart that has
this one as a dependency, pass `(index .Subcharts "tfserving-exporter")` (or the alias), or
just `.` when the dependency keeps its name.
*/}}
{{- define "tfserving-exporter.withContext" -}}
{{- $ctx := .ctx -}}
{{- if and (not (hasKey $ctx.Values "exporter")) (hasKey $ctx "Subcharts") (hasKey $ctx.Subcharts "tfserving-exporter") -}}
{{- $ctx = index $ctx.Subcharts "tfserving-exporter" -}}
{{- end -}}
{{- if not (hasKey $ctx.Values "exporter") -}}
{{- fail (printf "%s: pass the tfserving-exporter chart's context, e.g. (index .Subcharts \"tfserving-exporter\")" .template) -}}
{{- end -}}
{{- include .template $ctx -}}
{{- end -}}

{{- define "tfserving-exporter.sidecarContainer" -}}
{{- include "tfserving-exporter.withContext" (dict "ctx" . "template" "tfserving-exporter.sidecarContainer.render") -}}
{{- end -}}

{{- define "tfserving-exporter.sidecarVolumes" -}}
{{- include "tfserving-exporter.withContext" (dict "ctx" . "template" "tfserving-exporter.sidecarVolumes.render") -}}
{{- end -}}

{{- define "tfserving-exporter.sidecarPodAnnotations" -}}
{{- include "tfserving-exporter.withContext" (dict "ctx" . "template" "tfserving-exporter.sidecarPodAnnotations.render") -}}
{{- end -}}

{{/*
Where the exporter finds models.config: {"volume", "mountPath", "file"}, or empty.
*/}}
{{- define "tfserving-exporter.modelConfigMount" -}}
{{- if include "tfserving-exporter.servingMode" . -}}
volume: tfserving-config
mountPath: /config
file: /config/models.config
{{- else if include "tfserving-exporter.fleetMode" . -}}
{{- /* Fleet mode: models come from each probe's module and model parameters. */ -}}
{{- else if .Values.sidecarOnly.modelConfig.volumeName -}}
{{- $m := .Values.sidecarOnly.modelConfig -}}
volume: {{ $m.volumeName }}
mountPath: {{ $m.mountPath }}
file: {{ printf "%s/%s" (trimSuffix "/" $m.mountPath) $m.fileName }}
{{- end -}}
{{- end -}}

{{- define "tfserving-exporter.exporterArgs" -}}
{{- $serving := include "tfserving-exporter.servingMode" . -}}
{{- $grpc := .Values.exporter.tfserving.grpcAddress | default (printf "127.0.0.1:%v" (ternary .Values.tfserving.grpcPort 8500 (eq $serving "true"))) -}}
{{- $rest := .Values.exporter.tfserving.restAddress | default (printf "http://127.0.0.1:%v" (ternary .Values.tfserving.restPort 8501 (eq $serving "true"))) -}}
{{- $native := .Values.exporter.nativeCollector -}}
{{- $nativeOn := and $native.enabled (or (not $serving) .Values.tfserving.monitoring.enabled) -}}
{{- $metricsPath := $native.metricsPath | default (ternary .Values.tfserving.monitoring.path "" (eq $serving "true")) -}}
{{- $modelConfig := include "tfserving-exporter.modelConfigMount" . | fromYaml -}}
- --config.file=/etc/tfserving-exporter/config.yaml
- --web.listen-address=:{{ .Values.exporter.port }}
- --web.telemetry-path={{ .Values.exporter.telemetryPath }}
{{- if include "tfserving-exporter.fleetMode" . }}
{{- include "tfserving-exporter.fleetArgs" . }}
{{- else }}
- --tfserving.grpc-address={{ ternary "" $grpc (eq $grpc "-") }}
- --tfserving.rest-address={{ ternary "" $rest (eq $rest "-") }}
{{- end }}
{{- with $metricsPath }}
- --tfserving.metrics-path={{ . }}
{{- end }}
{{- with $modelConfig }}
- --tfserving.model-config-file={{ .file }}
{{- end }}
{{- if include "tfserving-exporter.goldenSource" . }}
- --canary.golden-dir={{ .Values.canary.mountPath }}
{{- end }}
- --{{ ternary "" "no-" $nativeOn }}collector.native
- --collector.native.passthrough={{ $native.passthrough }}
{{- include "tfserving-exporter.grpcTlsArgs" . }}
{{- with include "tfserving-exporter.webConfigFile" . }}
- --web.config.file={{ . }}
{{- end }}
{{- with .Values.exporter.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Fleet mode: no TF Serving address of the exporter's own (each probe's target is one), the
allow-list of targets and the fleet's limits.
*/}}
{{- define "tfserving-exporter.fleetArgs" -}}
{{- $fleet := .Values.fleet -}}
{{- range $value := list "grpcAddress" "restAddress" -}}
{{- if index $.Values.exporter.tfserving $value -}}
{{- fail (printf "exporter.tfserving.%s is not used in fleet mode, where each probe's target says where TF Serving is: leave it empty" $value) -}}
{{- end -}}
{{- end -}}
{{- if not $fleet.allowedTargets -}}
{{- fail "fleet.allowedTargets is required in fleet mode: list the targets /probe may connect to, e.g. --set fleet.allowedTargets={10.0.0.0/8} (CIDRs match targets given as IP addresses, as pod discovery gives them: use your pod CIDR; host globs such as *.svc.cluster.local match targets given by name). With an empty list /probe refuses every target." -}}
{{- end }}
- --tfserving.grpc-address=
- --tfserving.rest-address=
{{- range $fleet.allowedTargets }}
- {{ printf "--probe.allowed-target=%s" . | quote }}
{{- end }}
- --probe.rest-port={{ $fleet.restPort }}
- --fleet.max-targets={{ $fleet.maxTargets }}
- --fleet.target-expiry={{ $fleet.targetExpiry }}
{{- end -}}

{{/*
The exporter's Service as Prometheus reaches it from any namespace: host:port.
*/}}
{{- define "tfserving-exporter.serviceAddress" -}}
{{- printf "%s.%s.svc:%v" (include "tfserving-exporter.fullname" .) .Release.Namespace .Values.exporter.port -}}
{{- end -}}

{{/*
A Kubernetes label or annotation name as Prometheus' service discovery writes it in a meta
label: every character but letters, digits and "_" becomes "_".
*/}}
{{- define "tfserving-exporter.metaLabelName" -}}
{{- regexReplaceAll "[^a-zA-Z0-9_]" . "_" -}}
{{- end -}}

{{/*
The relabelings of fleet mode (RelabelConfig list, the Operator's field names): keep the TF
Serving pods fleet.podSelector selects, running, on their gRPC port; the pod's address becomes
the probe's target and `instance`; the models annotation the `model` parameter; `namespace`
and `pod` are copied; then `fleet.scrapeConfig.relabelings`; last, the scrape goes to the
exporter's Service. examples/prometheus-fleet.yml has the same rules for a plain
prometheus.yml (a test compares the two).
*/}}
{{- define "tfserving-exporter.fleetRelabelings" -}}
{{- $fleet := .Values.fleet -}}
{{- if not $fleet.podSelector -}}
{{- fail "fleet.podSelector is required for the ScrapeConfig (fleet.scrapeConfig.enabled): set the labels of the TF Serving pods to probe, e.g. --set fleet.podSelector.app=tfserving" -}}
{{- end -}}
{{- range $name, $value := $fleet.podSelector }}
- sourceLabels: [__meta_kubernetes_pod_label_{{ include "tfserving-exporter.metaLabelName" $name }}]
  regex: {{ regexQuoteMeta $value | quote }}
  action: keep
{{- end }}
- sourceLabels: [__meta_kubernetes_pod_container_port_name]
  regex: {{ regexQuoteMeta $fleet.grpcPortName | quote }}
  action: keep
- sourceLabels: [__meta_kubernetes_pod_phase]
  regex: Running
  action: keep
- sourceLabels: [__address__]
  targetLabel: __param_target
  action: replace
- sourceLabels: [__param_target]
  targetLabel: instance
  action: replace
{{- with $fleet.modelsAnnotation }}
- sourceLabels: [__meta_kubernetes_pod_annotation_{{ include "tfserving-exporter.metaLabelName" . }}]
  regex: (.+)
  targetLabel: __param_model
  action: replace
{{- end }}
- sourceLabels: [__meta_kubernetes_namespace]
  targetLabel: namespace
  action: replace
- sourceLabels: [__meta_kubernetes_pod_name]
  targetLabel: pod
  action: replace
{{- with $fleet.scrapeConfig.relabelings }}
{{ toYaml . }}
{{- end }}
- targetLabel: __address__
  replacement: {{ include "tfserving-exporter.serviceAddress" . | quote }}
  action: replace
{{- end -}}

{{/*
The `job` label of the fleet's probes: spec.jobName, else what the Operator names the job.
*/}}
{{- define "tfserving-exporter.fleetJob" -}}
{{- $sc := .Values.fleet.scrapeConfig -}}
{{- $sc.jobName | default (printf "scrapeConfig/%s/%s" ($sc.namespace | default .Release.Namespace) (include "tfserving-exporter.fullname" .)) -}}
{{- end -}}

{{- define "tfserving-exporter.sidecarContainer.render" -}}
{{- $e := .Values.exporter -}}
{{- $modelConfig := include "tfserving-exporter.modelConfigMount" . | fromYaml -}}
- name: tfserving-exporter
  image: {{ include "tfserving-exporter.image" (list $e.image .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $e.image.pullPolicy }}
  {{- with $e.command }}
  command:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  args:
    {{- include "tfserving-exporter.exporterArgs" . | nindent 4 }}
  ports:
    - name: metrics
      containerPort: {{ $e.port }}
      protocol: TCP
  {{- with $e.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $e.livenessProbe }}
  livenessProbe:
    {{- include "tfserving-exporter.exporterProbe" (list $ .) | nindent 4 }}
  {{- end }}
  {{- with $e.readinessProbe }}
  readinessProbe:
    {{- include "tfserving-exporter.exporterProbe" (list $ .) | nindent 4 }}
  {{- end }}
  {{- with $e.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $e.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: tfserving-exporter-config
      mountPath: /etc/tfserving-exporter
      readOnly: true
    {{- with $modelConfig }}
    - name: {{ .volume }}
      mountPath: {{ .mountPath }}
      readOnly: true
    {{- end }}
    {{- if include "tfserving-exporter.goldenSource" . }}
    - name: tfserving-exporter-golden
      mountPath: {{ .Values.canary.mountPath }}
      readOnly: true
    {{- end }}
    {{- include "tfserving-exporter.tlsVolumeMounts" . | nindent 4 }}
    {{- with $e.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "tfserving-exporter.sidecarVolumes.render" -}}
{{- $source := include "tfserving-exporter.goldenSource" . -}}
- name: tfserving-exporter-config
  configMap:
    name: {{ include "tfserving-exporter.configMapName" . }}
{{- if eq $source "canary.goldenSets" }}
- name: tfserving-exporter-golden
  configMap:
    name: {{ include "tfserving-exporter.goldenConfigMapName" . }}
{{- else if eq $source "canary.existingConfigMap" }}
- name: tfserving-exporter-golden
  configMap:
    name: {{ .Values.canary.existingConfigMap }}
{{- else if eq $source "canary.volume" }}
- name: tfserving-exporter-golden
  {{- toYaml .Values.canary.volume | nindent 2 }}
{{- end }}
{{- include "tfserving-exporter.tlsVolumes" . }}
{{- end -}}

{{/*
Pod annotations that roll the pods when the exporter's configuration or golden sets change.
*/}}
{{- define "tfserving-exporter.sidecarPodAnnotations.render" -}}
checksum/config: {{ printf "%s\n---\n%s\n---\n%s" (include "tfserving-exporter.configYaml" .) (include "tfserving-exporter.goldenData" .) (include "tfserving-exporter.webConfigData" .) | sha256sum }}
{{- end -}}

{{/*
TF Serving (serving mode)
-------------------------
*/}}
{{- define "tfserving-exporter.modelsConfig" -}}
{{- $names := dict -}}
{{- if not .Values.tfserving.models -}}
{{- fail "tfserving.models must list at least one model in serving mode (name and basePath)" -}}
{{- end -}}
model_config_list {
{{- range $index, $model := .Values.tfserving.models }}
{{- if hasKey $names $model.name }}
{{- fail (printf "tfserving.models[%d]: duplicate model name %q" $index $model.name) }}
{{- end }}
{{- $_ := set $names $model.name true }}
  config {
    name: {{ $model.name | quote }}
    base_path: {{ $model.basePath | quote }}
    model_platform: {{ $model.platform | default "tensorflow" | quote }}
    {{- with $model.versionPolicy }}
    {{- if hasKey . "latest" }}
    model_version_policy { latest { num_versions: {{ .latest.numVersions | int }} } }
    {{- else if hasKey . "all" }}
    model_version_policy { all {} }
    {{- else if hasKey . "specific" }}
    model_version_policy { specific {
      {{- range .specific.versions }} versions: {{ . | int64 }}{{ end }} } }
    {{- end }}
    {{- end }}
    {{- range $label, $version := $model.versionLabels }}
    version_labels { key: {{ $label | quote }} value: {{ $version | int64 }} }
    {{- end }}
  }
{{- end }}
}
{{- end -}}

{{- define "tfserving-exporter.monitoringConfig" -}}
prometheus_config {
  enable: true,
  path: {{ .Values.tfserving.monitoring.path | quote }}
}
{{- end -}}


{{/*
TLS and basic auth
------------------
The exporter's web config file (exporter.web, Prometheus' --web.config.file format) and gRPC
TLS to TF Serving (exporter.tfserving.grpcTls), from Secrets mounted below
/var/run/secrets/tfserving-exporter.

Where the web config file comes from ("webConfigSource"):
- "configMap": TLS only; key web-config.yaml of the exporter's ConfigMap.
- "chartSecret": exporter.web.basicAuth.users; the whole file in the chart's Secret
  <fullname>-web-config (templates/web-config-secret.yaml).
- "initContainer": exporter.web.basicAuth.secretName; the TLS part (web-config-base.yaml in the
  ConfigMap) and the users' Secret are merged by the init container
  `tfserving-exporter-web-config` into an emptyDir.
*/}}
{{- define "tfserving-exporter.secretsDir" -}}/var/run/secrets/tfserving-exporter{{- end -}}

{{- define "tfserving-exporter.webConfigSource" -}}
{{- $web := .Values.exporter.web -}}
{{- $tls := $web.tls -}}
{{- $auth := $web.basicAuth -}}
{{- if and $tls.enabled (not $tls.secretName) -}}
{{- fail "exporter.web.tls.enabled needs exporter.web.tls.secretName: a Secret with tls.crt and tls.key (type kubernetes.io/tls, e.g. from cert-manager)" -}}
{{- end -}}
{{- if and (not $tls.enabled) (or $tls.secretName $tls.clientCASecretName (ne $tls.clientAuthType "NoClientCert")) -}}
{{- fail "exporter.web.tls.secretName, clientCASecretName and clientAuthType apply only with exporter.web.tls.enabled=true" -}}
{{- end -}}
{{- if and $auth.users $auth.secretName -}}
{{- fail "exporter.web.basicAuth: set users or secretName, not both" -}}
{{- end -}}
{{- if $auth.secretName -}}initContainer
{{- else if $auth.users -}}chartSecret
{{- else if $tls.enabled -}}configMap
{{- end -}}
{{- end -}}

{{/*
The --web.config.file path in the exporter container; empty when neither TLS nor basic auth is on.
*/}}
{{- define "tfserving-exporter.webConfigFile" -}}
{{- $source := include "tfserving-exporter.webConfigSource" . -}}
{{- if eq $source "configMap" -}}/etc/tfserving-exporter/web-config.yaml
{{- else if eq $source "chartSecret" -}}{{ include "tfserving-exporter.secretsDir" . }}/web-config/web-config.yaml
{{- else if eq $source "initContainer" -}}/run/tfserving-exporter/web/web-config.yaml
{{- end -}}
{{- end -}}

{{- define "tfserving-exporter.webTlsServerConfig" -}}
{{- $tls := .Values.exporter.web.tls -}}
{{- $dir := include "tfserving-exporter.secretsDir" . -}}
{{- if $tls.enabled -}}
tls_server_config:
  cert_file: {{ $dir }}/web-tls/tls.crt
  key_file: {{ $dir }}/web-tls/tls.key
  client_auth_type: {{ $tls.clientAuthType }}
  {{- if ne $tls.clientAuthType "NoClientCert" }}
  client_ca_file: {{ $dir }}/{{ ternary "web-client-ca" "web-tls" (not (empty $tls.clientCASecretName)) }}/ca.crt
  {{- end }}
  min_version: {{ $tls.minVersion }}
{{- end -}}
{{- end -}}

{{/*
What the chart writes of the web config, by file name (rendered into the ConfigMap or the
chart's Secret; also part of the pods' checksum).
*/}}
{{- define "tfserving-exporter.webConfigData" -}}
{{- $source := include "tfserving-exporter.webConfigSource" . -}}
{{- $tls := include "tfserving-exporter.webTlsServerConfig" . -}}
{{- if eq $source "configMap" -}}
web-config.yaml: {{ $tls | quote }}
{{- else if eq $source "initContainer" -}}
web-config-base.yaml: {{ $tls | default "{}" | quote }}
{{- else if eq $source "chartSecret" -}}
web-config.yaml: {{ printf "%s\nbasic_auth_users:\n%s\n" $tls (toYaml .Values.exporter.web.basicAuth.users | indent 2) | trimPrefix "\n" | quote }}
{{- end -}}
{{- end -}}

{{- define "tfserving-exporter.webConfigSecretName" -}}
{{- include "tfserving-exporter.suffixedName" (list . "web-config") -}}
{{- end -}}

{{/*
The init container that merges exporter.web.basicAuth.secretName's users into the web config
file. It runs the exporter image's Python (PyYAML is one of the exporter's dependencies).
*/}}
{{- define "tfserving-exporter.webConfigMerge" -}}
import sys, yaml
base, users, out = sys.argv[1:4]
with open(base, encoding="utf-8") as f:
    config = yaml.safe_load(f) or {}
with open(users, encoding="utf-8") as f:
    config["basic_auth_users"] = yaml.safe_load(f)
with open(out, "w", encoding="utf-8") as f:
    yaml.safe_dump(config, f)
{{- end -}}

{{- define "tfserving-exporter.sidecarInitContainers" -}}
{{- include "tfserving-exporter.withContext" (dict "ctx" . "template" "tfserving-exporter.sidecarInitContainers.render") -}}
{{- end -}}

{{- define "tfserving-exporter.sidecarInitContainers.render" -}}
{{- if eq (include "tfserving-exporter.webConfigSource" .) "initContainer" -}}
{{- $e := .Values.exporter -}}
- name: tfserving-exporter-web-config
  image: {{ include "tfserving-exporter.image" (list $e.image .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $e.image.pullPolicy }}
  command:
    - python
    - -c
    - {{ include "tfserving-exporter.webConfigMerge" . | quote }}
    - /etc/tfserving-exporter/web-config-base.yaml
    - {{ include "tfserving-exporter.secretsDir" . }}/basic-auth/users.yaml
    - {{ include "tfserving-exporter.webConfigFile" . }}
  {{- with $e.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $e.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: tfserving-exporter-config
      mountPath: /etc/tfserving-exporter
      readOnly: true
    - name: tfserving-exporter-basic-auth
      mountPath: {{ include "tfserving-exporter.secretsDir" . }}/basic-auth
      readOnly: true
    - name: tfserving-exporter-web-config
      mountPath: /run/tfserving-exporter/web
{{- end -}}
{{- end -}}

{{/*
The exporter's gRPC TLS flags (exporter.tfserving.grpcTls).
*/}}
{{- define "tfserving-exporter.grpcTlsArgs" -}}
{{- $g := .Values.exporter.tfserving.grpcTls -}}
{{- $dir := printf "%s/grpc-tls" (include "tfserving-exporter.secretsDir" .) -}}
{{- if and (not $g.enabled) (or $g.secretName $g.clientCertificate $g.serverName) -}}
{{- fail "exporter.tfserving.grpcTls.secretName, clientCertificate and serverName apply only with exporter.tfserving.grpcTls.enabled=true" -}}
{{- end -}}
{{- if and $g.clientCertificate (not $g.secretName) -}}
{{- fail "exporter.tfserving.grpcTls.clientCertificate needs exporter.tfserving.grpcTls.secretName: a Secret with ca.crt, tls.crt and tls.key" -}}
{{- end -}}
{{- if $g.enabled }}
- --tfserving.grpc-tls=true
{{- if $g.secretName }}
- --tfserving.grpc-tls.ca-file={{ $dir }}/ca.crt
{{- end }}
{{- if $g.clientCertificate }}
- --tfserving.grpc-tls.cert-file={{ $dir }}/tls.crt
- --tfserving.grpc-tls.key-file={{ $dir }}/tls.key
{{- end }}
{{- with $g.serverName }}
- --tfserving.grpc-tls.server-name={{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "tfserving-exporter.tlsVolumeMounts" -}}
{{- $dir := include "tfserving-exporter.secretsDir" . -}}
{{- $source := include "tfserving-exporter.webConfigSource" . -}}
{{- $tls := .Values.exporter.web.tls -}}
{{- if $tls.enabled }}
- name: tfserving-exporter-web-tls
  mountPath: {{ $dir }}/web-tls
  readOnly: true
{{- if and (ne $tls.clientAuthType "NoClientCert") $tls.clientCASecretName }}
- name: tfserving-exporter-web-client-ca
  mountPath: {{ $dir }}/web-client-ca
  readOnly: true
{{- end }}
{{- end }}
{{- if eq $source "chartSecret" }}
- name: tfserving-exporter-web-config
  mountPath: {{ $dir }}/web-config
  readOnly: true
{{- else if eq $source "initContainer" }}
- name: tfserving-exporter-web-config
  mountPath: /run/tfserving-exporter/web
  readOnly: true
{{- end }}
{{- if .Values.exporter.tfserving.grpcTls.secretName }}
- name: tfserving-exporter-grpc-tls
  mountPath: {{ $dir }}/grpc-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tfserving-exporter.tlsVolumes" -}}
{{- $source := include "tfserving-exporter.webConfigSource" . -}}
{{- $tls := .Values.exporter.web.tls -}}
{{- $g := .Values.exporter.tfserving.grpcTls -}}
{{- if $tls.enabled }}
{{- $ownCA := and (ne $tls.clientAuthType "NoClientCert") (not $tls.clientCASecretName) }}
- name: tfserving-exporter-web-tls
  secret:
    secretName: {{ $tls.secretName }}
    defaultMode: 288  # 0440: keys and hashes readable by the pod's fsGroup only
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      {{- if $ownCA }}
      - {key: ca.crt, path: ca.crt}
      {{- end }}
{{- if and (ne $tls.clientAuthType "NoClientCert") $tls.clientCASecretName }}
- name: tfserving-exporter-web-client-ca
  secret:
    secretName: {{ $tls.clientCASecretName }}
    defaultMode: 288  # 0440: keys and hashes readable by the pod's fsGroup only
    items:
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- end }}
{{- if eq $source "chartSecret" }}
- name: tfserving-exporter-web-config
  secret:
    secretName: {{ include "tfserving-exporter.webConfigSecretName" . }}
    defaultMode: 288  # 0440: keys and hashes readable by the pod's fsGroup only
{{- else if eq $source "initContainer" }}
- name: tfserving-exporter-web-config
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: tfserving-exporter-basic-auth
  secret:
    secretName: {{ .Values.exporter.web.basicAuth.secretName }}
    defaultMode: 288  # 0440: keys and hashes readable by the pod's fsGroup only
    items:
      - key: {{ .Values.exporter.web.basicAuth.secretKey }}
        path: users.yaml
{{- end }}
{{- if $g.secretName }}
- name: tfserving-exporter-grpc-tls
  secret:
    secretName: {{ $g.secretName }}
    defaultMode: 288  # 0440: keys and hashes readable by the pod's fsGroup only
    items:
      - {key: ca.crt, path: ca.crt}
      {{- if $g.clientCertificate }}
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      {{- end }}
{{- end }}
{{- end -}}

{{/*
An exporter probe as given, but over HTTPS when the exporter serves TLS, and a tcpSocket probe
when it requires client certificates (the kubelet has none). Takes (list $ctx $probe).
*/}}
{{- define "tfserving-exporter.exporterProbe" -}}
{{- $ctx := index . 0 -}}
{{- $probe := deepCopy (index . 1) -}}
{{- $tls := $ctx.Values.exporter.web.tls -}}
{{- if and $tls.enabled (kindIs "map" $probe.httpGet) -}}
{{- if eq $tls.clientAuthType "RequireAndVerifyClientCert" -}}
{{- $port := $probe.httpGet.port -}}
{{- $_ := unset $probe "httpGet" -}}
{{- $_ := set $probe "tcpSocket" (dict "port" $port) -}}
{{- else if not $probe.httpGet.scheme -}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end -}}

{{/*
How the chart's monitors reach the exporter: scheme, tlsConfig and basicAuth
(exporter.web.scrapeClient). Takes (dict "ctx" $ "what" "<the monitor>" "upper" <bool>).
*/}}
{{- define "tfserving-exporter.scrapeClient" -}}
{{- $ctx := .ctx -}}
{{- $web := $ctx.Values.exporter.web -}}
{{- $client := $web.scrapeClient -}}
{{- $auth := or $web.basicAuth.users $web.basicAuth.secretName -}}
{{- if and $web.tls.enabled (not $client.tlsConfig) -}}
{{- fail (printf "exporter.web.tls.enabled: %s scrapes over HTTPS and needs exporter.web.scrapeClient.tlsConfig, e.g. {ca: {secret: {name: %s, key: ca.crt}}, serverName: NAME-IN-THE-CERTIFICATE} (or {insecureSkipVerify: true})" .what $web.tls.secretName) -}}
{{- end -}}
{{- if and (not $web.tls.enabled) $client.tlsConfig -}}
{{- fail "exporter.web.scrapeClient.tlsConfig is set but the exporter serves plain HTTP: set exporter.web.tls.enabled=true or leave tlsConfig empty" -}}
{{- end -}}
{{- if and (eq $web.tls.clientAuthType "RequireAndVerifyClientCert") (not (and $client.tlsConfig.cert $client.tlsConfig.keySecret)) -}}
{{- fail (printf "exporter.web.tls.clientAuthType=RequireAndVerifyClientCert: %s needs a client certificate, exporter.web.scrapeClient.tlsConfig.cert and keySecret" .what) -}}
{{- end -}}
{{- if and $auth (not $client.basicAuth) -}}
{{- fail (printf "exporter.web.basicAuth is on: %s needs exporter.web.scrapeClient.basicAuth ({username: {name: SECRET, key: KEY}, password: {name: SECRET, key: KEY}})" .what) -}}
{{- end -}}
{{- if and (not $auth) $client.basicAuth -}}
{{- fail "exporter.web.scrapeClient.basicAuth is set but the exporter has no basic auth users: set exporter.web.basicAuth or leave it empty" -}}
{{- end -}}
{{- /* The ScrapeConfig's scheme is upper case (an enum of its CRD); without TLS it is left out. */ -}}
{{- if eq (toString .upper) "true" -}}
{{- if $web.tls.enabled }}
scheme: HTTPS
{{- end }}
{{- else }}
scheme: {{ ternary "https" "http" $web.tls.enabled }}
{{- end }}
{{- with $client.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $client.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
