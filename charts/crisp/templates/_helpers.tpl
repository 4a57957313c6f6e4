{{/* Base name of every object: fullnameOverride, else the release name if it says crisp, else "<release>-crisp". */}}
{{- define "crisp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{ .Values.fullnameOverride }}
{{- else if contains "crisp" .Release.Name -}}
{{ .Release.Name }}
{{- else -}}
{{ print .Release.Name "-crisp" }}
{{- end -}}
{{- end -}}

{{- define "crisp.selectorLabels" -}}
app.kubernetes.io/name: crisp
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "crisp.labels" -}}
{{ include "crisp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ print .Chart.Name "-" .Chart.Version | quote }}
{{- end -}}

{{- define "crisp.image" -}}
{{- required "image.repository is required: the installer image holding the crisp package (images/installer/Dockerfile)" .Values.image.repository -}}
:{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* A socket path as the kernel resolves it: without unix://, /var/run/ as /run/. */}}
{{- define "crisp.socketPath" -}}
{{- $p := trimPrefix "unix://" . -}}
{{- if hasPrefix "/var/run/" $p -}}{{ trimPrefix "/var" $p }}{{- else -}}{{ $p }}{{- end -}}
{{- end -}}

{{/* The metrics port: the part of config.metrics_address after its last colon. */}}
{{- define "crisp.metricsPort" -}}
{{- last (splitList ":" .Values.config.metrics_address) -}}
{{- end -}}

{{/*
Refuses values that would break a node: keys crisp does not know, two runtimes on one socket, crisp's
own servers sharing a socket, plugins without NRI, monitors without a reachable metrics address.
Rendered (empty) at the top of the DaemonSet template.
*/}}
{{- define "crisp.validate" -}}
{{- $config := .Values.config -}}
{{- $known := list "socket" "root" "state" "log_level" "containerd_address" "containerd_binary" "containerd_namespace" "containerd_timeout" "cgroup_driver" "cgroup_parent" "default_runtime_handler" "shutdown_timeout" "pod_log_root" "cni_conf_dir" "cni_bin_dirs" "cni_timeout" "image_config_path" "image_pull_progress_timeout" "image_max_concurrent_downloads" "image_unpack" "image_pinned" "snapshotter" "streaming_address" "streaming_port" "streaming_idle_timeout" "streaming_tls_cert" "streaming_tls_key" "streaming_url_ttl" "streaming_allow_insecure_remote" "nri_enabled" "nri_socket" "nri_plugin_dir" "nri_plugin_config_dir" "nri_required_plugins" "nri_registration_timeout" "nri_request_timeout" "userns_chown_fallback" "warm_pod_shims" "shim_grouping" "shim_start_helper" "cdi_spec_dirs" "metrics_address" "nshelper_path" "logger_path" "tracing_endpoint" "tracing_sampling_rate_per_million" "log_format" "runtimes" -}}
{{- range $key, $value := $config -}}
{{- if not (has $key $known) -}}
{{- fail (print "config." $key ": crisp has no such key (see `crisp config default`)") -}}
{{- end -}}
{{- end -}}
{{- if not (kindIs "string" (default "" $config.socket)) -}}
{{- fail "config.socket: must be a path" -}}
{{- end -}}
{{- $socket := include "crisp.socketPath" (default "/run/crisp/crisp.sock" $config.socket) -}}
{{- if not (hasPrefix "/" $socket) -}}
{{- fail (print "config.socket: " $config.socket " is not an absolute path") -}}
{{- end -}}
{{- $others := concat (list "/run/containerd/containerd.sock" "/run/crio/crio.sock" "/run/docker.sock" "/run/cri-dockerd.sock" "/run/k3s/containerd/containerd.sock" "/run/dockershim.sock") .Values.extraRuntimeSockets -}}
{{- range $other := $others -}}
{{- if eq $socket (include "crisp.socketPath" $other) -}}
{{- fail (print "config.socket: " $config.socket " is another runtime's socket (" $other "): two runtimes cannot serve one socket") -}}
{{- end -}}
{{- end -}}
{{- $containerd := include "crisp.socketPath" (default "" $config.containerd_address) -}}
{{- if eq $containerd $socket -}}
{{- fail (print "config.containerd_address: " $config.containerd_address " is crisp's own socket (config.socket): crisp would dial itself as containerd") -}}
{{- end -}}
{{- $nri := include "crisp.socketPath" (default "/var/run/nri/nri.sock" $config.nri_socket) -}}
{{- if eq $nri $socket -}}
{{- fail (print "config.nri_socket: " $config.nri_socket " is config.socket: the CRI and NRI servers cannot share a socket") -}}
{{- end -}}
{{- if eq $nri $containerd -}}
{{- fail (print "config.nri_socket: " $config.nri_socket " is config.containerd_address") -}}
{{- end -}}
{{- range $other := $others -}}
{{- if eq $nri (include "crisp.socketPath" $other) -}}
{{- fail (print "config.nri_socket: " $config.nri_socket " is another runtime's socket (" $other ")") -}}
{{- end -}}
{{- end -}}
{{- range $name, $plugin := .Values.nriPlugins -}}
{{- if and $plugin.enabled (eq $config.nri_enabled false) -}}
{{- fail (print "nriPlugins." $name ".enabled: needs config.nri_enabled") -}}
{{- end -}}
{{- end -}}
{{- if or .Values.metrics.podMonitor.enabled .Values.metrics.serviceMonitor.enabled -}}
{{- $address := default "" $config.metrics_address -}}
{{- if not $address -}}
{{- fail "metrics.podMonitor/serviceMonitor: set config.metrics_address (e.g. \":9099\"): crispd serves no metrics without it" -}}
{{- end -}}
{{- if or (hasPrefix "127." $address) (hasPrefix "localhost:" $address) (hasPrefix "[::1]:" $address) -}}
{{- fail (print "metrics.podMonitor/serviceMonitor: config.metrics_address " $address " is a loopback address Prometheus cannot scrape (use \":PORT\")") -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
/etc/crisp/config.toml from .Values.config: scalars and lists as TOML (a JSON string, number, boolean
or list of strings is TOML as it is), then one [runtimes."NAME"] table per handler.
*/}}
{{- define "crisp.configToml" -}}
# /etc/crisp/config.toml, written by the crisp Helm chart (release {{ .Release.Name }}). Edits are
# replaced by the next install or upgrade: change the release's `config` values instead.
{{- range $key, $value := .Values.config }}
{{- if ne $key "runtimes" }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- range $name, $handler := .Values.config.runtimes }}

[runtimes.{{ toJson $name }}]
{{- range $k, $v := $handler }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{ end -}}
