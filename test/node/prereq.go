package node

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Host binaries come from Debian packages: building runc or the CNI plugins
// from source would need cgo and libseccomp, and a busybox for the images
// must be static, which only busybox-static provides.
const (
	DefaultRunc      = "/usr/sbin/runc"
	DefaultCNIBinDir = "/usr/lib/cni"
	DefaultBusybox   = "/bin/busybox"
	DefaultIptables  = "/usr/sbin/iptables"
	DefaultConntrack = "/usr/sbin/conntrack"
)

// debianPackages is what the node needs; the install hint names them all so
// one command fixes a fresh machine.
const installHint = "apt-get update && apt-get install -y runc containernetworking-plugins iptables conntrack busybox-static"

// cniPlugins are the CNI binaries the node's network configuration uses;
// loopback is run by containerd itself for every sandbox.
var cniPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// ErrMissingPrerequisite is wrapped by every error about a missing host
// binary, so callers can tell "install a package" from other failures.
var ErrMissingPrerequisite = errors.New("missing prerequisite")

// CheckPrerequisites checks that the host binaries the node needs are there,
// and that busybox is statically linked (it is copied into images that
// have no libc). The error names the missing Debian package and the command
// that installs it.
func CheckPrerequisites(opts Options) error {
	opts.defaults()
	var missing []string
	check := func(path, pkg string) {
		st, err := os.Stat(path)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", path, pkg))
		}
	}
	check(opts.Runc, "runc")
	for _, p := range cniPlugins {
		check(filepath.Join(opts.CNIBinDir, p), "containernetworking-plugins")
	}
	check(opts.Iptables, "iptables")
	check(opts.Conntrack, "conntrack")
	check(opts.Busybox, "busybox-static")
	if len(missing) > 0 {
		return fmt.Errorf("node: %w: %s; install with: %s", ErrMissingPrerequisite, strings.Join(missing, ", "), installHint)
	}
	if static, err := isStatic(opts.Busybox); err != nil {
		return fmt.Errorf("node: reading %s: %w", opts.Busybox, err)
	} else if !static {
		return fmt.Errorf("node: %w: %s is dynamically linked (Debian package busybox, not busybox-static); install with: %s",
			ErrMissingPrerequisite, opts.Busybox, installHint)
	}
	return nil
}

// isStatic reports whether an ELF binary has no program interpreter, i.e.
// runs in an image without a dynamic loader.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
