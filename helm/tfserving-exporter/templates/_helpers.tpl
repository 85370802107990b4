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

{{/*
The pods the exporter runs in: the chart's TF Serving pods (serving mode) or the user's pods
(sidecar-only mode, `sidecarOnly.podSelector`, required). Rendered as matchLabels content.
Takes (dict "ctx" $ "what" "<the object that needs it>").
*/}}
{{- define "tfserving-exporter.podSelectorLabels" -}}
{{- $ctx := .ctx -}}
{{- if include "tfserving-exporter.servingMode" $ctx -}}
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
{{- end -}}

{{- define "tfserving-exporter.configYaml" -}}
{{- $config := .Values.exporter.config | default dict -}}
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
- --tfserving.grpc-address={{ ternary "" $grpc (eq $grpc "-") }}
- --tfserving.rest-address={{ ternary "" $rest (eq $rest "-") }}
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
