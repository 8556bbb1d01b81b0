// Package node runs one real Kubernetes node on this machine for tests: a
// containerd (built from the module proxy once, like the control plane) and
// the kubelet built by cluster.KubernetesBinaries, joined to a local control
// plane from package cluster.
//
// The simulated kubelets elsewhere in test/ say what the kubelet should do;
// this node shows what the real one does, so that what Rollbook relies on
// (a container restarted alone on an image patch, with a new imageID and
// containerID and a higher restartCount; readiness gates honoured in the
// Ready condition; ErrImageNeverPull for a missing image) is checked
// against the real thing.
//
// Images come from no registry: Start builds a few tiny busybox images in
// Go (see Images), imports them into containerd and names each one by
// digest too, so a container's imageID looks like one pulled from a
// registry (rollbook.local/app@sha256:...). Pods must use
// imagePullPolicy: Never.
//
// Everything the node creates lives under one directory (containerd's root
// and state, shim sockets, runc state, network namespaces, the kubelet's
// root, pod logs, CNI configuration and IPAM leases, component logs) except
// what the kernel or the kubelet keep at fixed places: a cgroup subtree
// named after the node in every hierarchy (the kubelet's cgroupRoot), a
// bridge interface, legacy log symlinks in /var/log/containers, the
// kubelet's device-plugin socket and a few kernel settings the kubelet
// changes (vm.overcommit_memory, kernel.panic, ...). Stop removes or
// restores all of it, and Start first removes what a crashed earlier run
// left behind (see cleanup.go and host.go).
//
// It needs root, a Linux kernel with overlayfs (or it falls back to the
// native snapshotter) and the Debian packages runc, containernetworking-
// plugins, iptables, conntrack and busybox-static; Start fails with the
// apt-get command that installs whatever is missing.
package node
