package node

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
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
