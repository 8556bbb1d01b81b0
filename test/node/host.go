package node

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// pickSubnet returns the first 10.244.N.0/24 that overlaps no address or
// route of this machine and no other live node's pod network (whose bridge
// may not exist yet: CNI creates it with the first pod).
func pickSubnet(live []state) (string, error) {
	var used []*net.IPNet
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				used = append(used, ipn)
			}
		}
	}
	used = append(used, routes()...)
	for _, st := range live {
		if _, ipn, err := net.ParseCIDR(st.PodSubnet); err == nil {
			used = append(used, ipn)
		}
	}
	for i := 0; i < 256; i++ {
		cidr := fmt.Sprintf("10.244.%d.0/24", i)
		_, cand, _ := net.ParseCIDR(cidr)
		free := true
		for _, u := range used {
			if ones, _ := u.Mask.Size(); ones == 0 {
				continue // the default route overlaps everything
			}
			if u.Contains(cand.IP) || cand.Contains(u.IP) {
				free = false
				break
			}
		}
		if free {
			return cidr, nil
		}
	}
	return "", fmt.Errorf("node: no free pod subnet in 10.244.0.0/16; set Options.PodSubnet")
}

// routes are the IPv4 routes of the main table, from /proc/net/route.
func routes() []*net.IPNet {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []*net.IPNet
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 {
			continue
		}
		dst, err1 := hex.DecodeString(fl[1])
		mask, err2 := hex.DecodeString(fl[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		// /proc/net/route prints addresses in host (little-endian) order.
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, binary.LittleEndian.Uint32(dst))
		m := make(net.IPMask, 4)
		binary.BigEndian.PutUint32(m, binary.LittleEndian.Uint32(mask))
		out = append(out, &net.IPNet{IP: ip, Mask: m})
	}
	return out
}

// defaultRouteIPv4 is the first IPv4 address of the interface that holds
// the default route, or of any non-loopback interface that is up, or "".
func defaultRouteIPv4() string {
	ifaceIP := func(name string) string {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return ""
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				return ipn.IP.String()
			}
		}
		return ""
	}
	if f, err := os.Open("/proc/net/route"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) >= 8 && fl[1] == "00000000" && fl[7] == "00000000" {
				if ip := ifaceIP(fl[0]); ip != "" {
					return ip
				}
			}
		}
	}
	ifcs, _ := net.Interfaces()
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagLoopback == 0 && !strings.HasPrefix(ifc.Name, bridgePrefix) {
			if ip := ifaceIP(ifc.Name); ip != "" {
				return ip
			}
		}
	}
	return ""
}

// probeSnapshotter returns "overlayfs" when an overlay mount works in dir
// (it does not inside some containers and on some filesystems) and
// "native" (full copies, slower but always possible) otherwise.
func probeSnapshotter(dir string) (string, error) {
	root := filepath.Join(dir, "overlay-probe")
	defer os.RemoveAll(root)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", fmt.Errorf("node: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		filepath.Join(root, "lower"), filepath.Join(root, "upper"), filepath.Join(root, "work"))
	merged := filepath.Join(root, "merged")
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "native", nil
	}
	syscall.Unmount(merged, syscall.MNT_DETACH)
	return "overlayfs", nil
}

// Host-wide state. A few things the node changes belong to the machine,
// not to one node: kernel settings the kubelet sets at start (it has no
// mode that leaves them alone: protectKernelDefaults only turns the change
// into a failure) and that the CNI bridge sets, and directories at fixed
// paths (the kubelet's device-plugin socket directory, its legacy log
// symlink directory, libcni's result cache). The first node to start on a
// machine without other live nodes records how they were; the last one to
// go puts them back. A lock on the parent directory serialises nodes of parallel
// processes.
const (
	hostStateFile = "rollbook-nodes.json"
)

// hostSysctls are the settings changed by the kubelet's container manager
// (setupKernelTunables) and by the CNI bridge plugin (ip_forward).
var hostSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
}

// hostDirs are created by the kubelet or libcni when missing, whatever the
// node's own directories are.
var hostDirs = []string{
	"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/var/log/containers",
	"/var/lib/cni", "/var/lib/cni/results",
}

// hostFiles are what a kubelet leaves in hostDirs: its device-plugin
// registration socket and checkpoint.
var hostFiles = []string{
	"/var/lib/kubelet/device-plugins/kubelet.sock",
	"/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint",
}

type hostState struct {
	Sysctls     map[string]string
	CreatedDirs []string
}

// withHostLock runs f holding an exclusive flock on parent itself: a
// directory can be locked like a file, and a lock file would be one more
// thing left behind.
func withHostLock(parent string, f func() error) error {
	d, err := os.Open(parent)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	defer d.Close()
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("node: locking %s: %w", parent, err)
	}
	defer syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
	return f()
}

// recordHost saves the host's settings unless a record exists: then either
// another node is live, or the last node crashed before restoring, and in
// both cases the existing record holds the values from before any node.
func recordHost(parent string) error {
	path := filepath.Join(parent, hostStateFile)
	return withHostLock(parent, func() error {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		hs := hostState{Sysctls: map[string]string{}}
		for _, s := range hostSysctls {
			if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
				hs.Sysctls[s] = strings.TrimSpace(string(b))
			}
		}
		for _, d := range hostDirs {
			if _, err := os.Stat(d); os.IsNotExist(err) {
				hs.CreatedDirs = append(hs.CreatedDirs, d)
			}
		}
		b, err := json.MarshalIndent(hs, "", "  ")
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		return nil
	})
}

// restoreHost puts the host's settings back when no node other than
// leaving (whose directory is being removed) is live.
func restoreHost(parent, leaving string) error {
	path := filepath.Join(parent, hostStateFile)
	return withHostLock(parent, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // nothing recorded
		}
		live, err := liveStates(parent, leaving)
		if err != nil || len(live) > 0 {
			return err
		}
		var hs hostState
		if err := json.Unmarshal(b, &hs); err != nil {
			os.Remove(path)
			return fmt.Errorf("node: %s: %w", path, err)
		}
		var errs []error
		for s, v := range hs.Sysctls {
			cur, err := os.ReadFile("/proc/sys/" + s)
			if err != nil || strings.TrimSpace(string(cur)) == v {
				continue
			}
			if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("node: restoring %s=%s: %w", s, v, err))
			}
		}
		for i := len(hs.CreatedDirs) - 1; i >= 0; i-- {
			d := hs.CreatedDirs[i]
			for _, f := range hostFiles {
				if filepath.Dir(f) == d {
					os.Remove(f)
				}
			}
			os.Remove(d) // only when empty: someone else may use it now
		}
		os.Remove(path)
		return errors.Join(errs...)
	})
}
