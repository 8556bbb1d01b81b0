package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// tomlString quotes s as a TOML basic string (the same escapes as JSON for
// the paths used here).
func tomlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// containerdConfig is containerd's configuration. Version 4 is the format
// containerd 2.4 writes with `containerd config default` (version 3 files
// are migrated on load; writing the native one avoids surprises from the
// migration). Every path containerd would otherwise take from its defaults
// (/var/lib/containerd, /run/containerd, /opt/containerd, /var/run/netns,
// /var/run/nri, /etc/cni) is pointed into the node's directory, so two nodes,
// or a node and a system containerd, never share state and Stop can remove
// everything.
func (n *Node) containerdConfig() string {
	p := n.paths
	q := tomlString
	return `version = 4
root = ` + q(p.containerdRoot) + `
state = ` + q(p.containerdState) + `
temp = ` + q(p.containerdTemp) + `
# No drop-in directory: only this file configures this containerd.
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = ` + q(n.Socket) + `
[plugins.'io.containerd.server.v1.ttrpc']
  address = ` + q(n.Socket+".ttrpc") + `
[plugins.'io.containerd.server.v1.debug']
  address = ''
[plugins.'io.containerd.server.v1.metrics']
  address = ''

# Shim sockets default to /run/containerd/s, shared by every containerd on
# the machine; keep ours with the rest of the node.
[plugins.'io.containerd.shim.v1.manager']
  socket_dir = ` + q(p.shimSockets) + `

[plugins.'io.containerd.internal.v1.opt']
  path = ` + q(filepath.Join(p.containerdRoot, "opt")) + `
[plugins.'io.containerd.image-verifier.v1.bindir']
  bin_dir = ` + q(filepath.Join(p.containerdRoot, "image-verifier")) + `
# NRI would listen on /var/run/nri/nri.sock; nothing here uses it.
[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = ` + q(n.snapshotter) + `
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # The sandbox image is ours, imported before the kubelet starts: there
    # is no registry to pull registry.k8s.io/pause from.
    sandbox = ` + q(Pause) + `

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE, so runc cannot lower a container's
  # oom_score_adj below containerd's own; without this every sandbox fails
  # with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  # Network namespaces under the state directory instead of /var/run/netns.
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      runtime_path = ` + q(n.bins.shim) + `
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = ` + q(n.opts.Runc) + `
        # runc's state, otherwise in /run/containerd/runc.
        Root = ` + q(p.runcRoot) + `
        # The kubelet runs with the cgroupfs driver: both must agree.
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [` + q(n.opts.CNIBinDir) + `]
    conf_dir = ` + q(p.cniConf) + `
    max_conf_num = 1
    # containerd brings lo up itself instead of running the CNI loopback
    # plugin, which would leave a libcni cache entry for every sandbox
    # that is never torn down through CNI.
    use_internal_loopback = true

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  # The streaming server (exec, attach, port-forward) on a random loopback
  # port.
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`
}

// cniConfig is the pod network: one bridge per node on a private subnet,
// with host-local IPAM keeping its leases in the node's directory. The
// bridge is the pods' gateway, so the host (and the tests) reach pod IPs
// directly; nothing is masqueraded, since pods here need no way out and
// ipMasq would add iptables rules on the host. portmap serves hostPort and
// adds no rules for pods without one.
func (n *Node) cniConfig() ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.network,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      n.Bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": n.PodSubnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": n.paths.ipam,
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
			},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("node: CNI config: %w", err)
	}
	return b, nil
}

// kubeletConfig is the KubeletConfiguration. Each setting is there because
// this machine or a test needs it:
//   - failCgroupV1: false: the machine is on cgroup v1, which the kubelet
//     refuses by default since 1.35.
//   - failSwapOn: false: do not depend on the machine's swap.
//   - cgroupDriver cgroupfs (no systemd here) and cgroupRoot: a cgroup of
//     our own, so the kubepods tree is the node's alone and Stop removes
//     exactly it.
//   - address, healthz on loopback ports picked free; anonymous and webhook
//     authentication off, AlwaysAllow: only this machine can reach it.
//   - eviction off (0% thresholds) and imageGCHighThresholdPercent 100: the
//     shared test disk's usage must not evict pods or delete our images,
//     which nothing could pull back.
//   - syncFrequency and nodeStatusUpdateFrequency small, so status follows
//     changes quickly.
//   - makeIPTablesUtilChains false: no KUBE-IPTABLES-HINT chain on the host.
//   - podLogsDir and volumePluginDir in the node's directory (otherwise
//     /var/log/pods and /usr/libexec/kubernetes/kubelet-plugins, which the
//     kubelet creates).
func (n *Node) kubeletConfig() string {
	p := n.paths
	q := tomlString // JSON strings are valid YAML scalars
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: ` + q("/"+n.cgroup) + `
cgroupsPerQOS: true
address: 127.0.0.1
port: ` + strconv.Itoa(n.kubeletPort) + `
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ` + strconv.Itoa(n.healthzPort) + `
containerRuntimeEndpoint: ` + q("unix://"+n.Socket) + `
imageServiceEndpoint: ` + q("unix://"+n.Socket) + `
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
registerNode: true
resolvConf: ` + q(p.resolvConf) + `
podLogsDir: ` + q(p.podLogs) + `
volumePluginDir: ` + q(filepath.Join(p.kubeletRoot, "volume-plugins")) + `
staticPodPath: ""
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
mergeDefaultEvictionSettings: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 3s
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 1m
runtimeRequestTimeout: 1m
podPidsLimit: 4096
maxPods: 32
serializeImagePulls: false
makeIPTablesUtilChains: false
containerLogMaxSize: 1Mi
containerLogMaxFiles: 2
`
}

// resolvConf is what pods get as /etc/resolv.conf: there is no cluster DNS
// and no network beyond the node, so nothing to resolve with.
const resolvConf = "nameserver 127.0.0.1\noptions ndots:1\n"

// writeConfigs writes every configuration file into the node's directory.
func (n *Node) writeConfigs() error {
	cni, err := n.cniConfig()
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data []byte
	}{
		{n.paths.containerdConfig, []byte(n.containerdConfig())},
		{filepath.Join(n.paths.cniConf, "10-"+n.network+".conflist"), cni},
		{n.paths.kubeletConfig, []byte(n.kubeletConfig())},
		{n.paths.resolvConf, []byte(resolvConf)},
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	return nil
}

// kubeletArgs are the kubelet's flags: what KubeletConfiguration cannot say.
// Every directory the kubelet would take from its defaults (/var/lib/kubelet,
// its pki) is the node's own.
func (n *Node) kubeletArgs() []string {
	args := []string{
		"--config=" + n.paths.kubeletConfig,
		"--kubeconfig=" + n.cluster.Kubeconfig,
		"--root-dir=" + n.paths.kubeletRoot,
		"--cert-dir=" + filepath.Join(n.paths.kubeletRoot, "pki"),
		"--hostname-override=" + n.Name,
		"--node-labels=" + NodeLabel + "=true",
		"--v=2",
	}
	// Without --node-ip the kubelet resolves its node name through DNS on
	// every status update (there is no DNS here: each lookup waits for a
	// timeout) before falling back to the default route's address. A
	// loopback --node-ip is refused, so only a real interface's address is
	// passed.
	if n.NodeIP != "" {
		args = append(args, "--node-ip="+n.NodeIP)
	}
	return append(args, n.opts.KubeletArgs...)
}

// NodeLabel is set to "true" on every node this package starts.
const NodeLabel = "rollbook.dev/real-node"
