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
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $e.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
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
{{- end -}}

{{/*
Pod annotations that roll the pods when the exporter's configuration or golden sets change.
*/}}
{{- define "tfserving-exporter.sidecarPodAnnotations.render" -}}
checksum/config: {{ printf "%s\n---\n%s" (include "tfserving-exporter.configYaml" .) (include "tfserving-exporter.goldenData" .) | sha256sum }}
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
