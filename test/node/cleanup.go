package node

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stateFile records, in the node's directory, what the node created outside
// it, so that a later run can remove a crashed node's leftovers without
// guessing.
const stateFile = "node.json"

type state struct {
	ID, Name, Dir, Cgroup, Bridge, Network, PodSubnet string
	// Owner is the process that started the node: while it lives the node
	// is not stale.
	Owner owner
}

// owner identifies a process across PID reuse by its start time.
type owner struct {
	PID   int
	Start uint64
}

func selfOwner() owner {
	pid := os.Getpid()
	return owner{PID: pid, Start: procStart(pid)}
}

// procStart is a process's start time in clock ticks since boot (field 22
// of /proc/<pid>/stat), or 0 when the process does not exist.
func procStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// The command name (field 2) is in parentheses and may hold spaces.
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 20 { // fields 3.. after the name; start time is field 22
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

func (o owner) alive() bool {
	return o.PID > 0 && procStart(o.PID) == o.Start && o.Start != 0
}

func (n *Node) saveState() error {
	b, err := json.MarshalIndent(n.state, "", "  ")
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	tmp := n.paths.state + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := os.Rename(tmp, n.paths.state); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("node: %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// liveStates returns the states of the nodes under parent whose owners are
// alive, except the one in skip.
func liveStates(parent, skip string) ([]state, error) {
	dirs, err := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var live []state
	for _, d := range dirs {
		if d == skip {
			continue
		}
		if st, err := readState(d); err == nil && st.Owner.alive() {
			live = append(live, st)
		}
	}
	return live, nil
}

// CleanupStale removes what nodes of earlier runs left behind when their
// process died without Stop (a crash, a test timeout, SIGKILL): node
// directories under parent whose owner is gone, with their processes,
// mounts, cgroups and bridges, and cgroups and bridges of ours that no live
// node claims. Live nodes, of this or another process, are left alone.
func CleanupStale(parent string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	dirs, err := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	claimed := map[string]bool{} // cgroups and bridges of live nodes
	var errs []error
	for _, d := range dirs {
		st, err := readState(d)
		switch {
		case err == nil && st.Owner.alive():
			claimed[st.Cgroup], claimed[st.Bridge] = true, true
			continue
		case err != nil:
			// A directory without a state file: a run that died between
			// creating it and writing the file, or a foreign directory
			// that happens to share our prefix. Only the first kind is
			// removed, once it is clearly not being set up right now.
			if fi, serr := os.Stat(d); serr != nil || !fi.IsDir() || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
			st = state{Dir: d}
		}
		fmt.Fprintf(progress, "node: removing leftovers of a stopped node in %s\n", d)
		if err := teardown(st, progress); err != nil {
			errs = append(errs, err)
		}
	}
	// Cgroups and bridges whose directory is gone already.
	for _, h := range cgroupHierarchies() {
		orphans, _ := filepath.Glob(filepath.Join(h, dirPrefix+"*"))
		for _, o := range orphans {
			name := filepath.Base(o)
			if !claimed[name] {
				fmt.Fprintf(progress, "node: removing stale cgroup %s\n", o)
				if err := removeCgroup(name); err != nil {
					errs = append(errs, err)
				}
				claimed[name] = true // once for all hierarchies
			}
		}
	}
	links, _ := filepath.Glob("/sys/class/net/" + bridgePrefix + "*")
	for _, l := range links {
		name := filepath.Base(l)
		if _, err := os.Stat(filepath.Join(l, "bridge")); err == nil && !claimed[name] {
			fmt.Fprintf(progress, "node: removing stale bridge %s\n", name)
			if err := removeBridge(name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Host settings left unrestored by a node that crashed after its
	// directory was gone.
	if err := restoreHost(parent, ""); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// teardown removes everything a node created, in an order where each step
// releases what the next one needs: processes hold mounts and cgroups,
// mounts hold network namespaces, network namespaces hold veths.
func teardown(st state, progress io.Writer) error {
	var errs []error
	if st.Dir == "" || !strings.HasPrefix(filepath.Base(st.Dir), dirPrefix) {
		return fmt.Errorf("node: refusing to tear down %q: not a node directory", st.Dir)
	}
	// 1. The kubelet, containerd, shims (re-parented to init when
	// containerd died; their command lines name our socket) and any runc
	// still running: everything whose command line names our directory.
	if err := killReferencing(st.Dir); err != nil {
		errs = append(errs, err)
	}
	// 2. Container processes, found through the node's cgroups.
	if st.Cgroup != "" {
		if err := killCgroup(st.Cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	// 3. Mounts: container root filesystems, sandbox /dev/shm, network
	// namespace files, kubelet volumes and the kubelet's rshared bind mount
	// of its root directory.
	if err := unmountUnder(st.Dir); err != nil {
		errs = append(errs, err)
	}
	// 4. The cgroup tree, deepest first.
	if st.Cgroup != "" {
		if err := removeCgroup(st.Cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	// 5. The bridge and any veth still attached to it.
	if st.Bridge != "" {
		if err := removeBridge(st.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	// 6. Files outside the directory: the kubelet's legacy log symlinks
	// and libcni's result cache (left when a sandbox was never torn down).
	removeLinksInto("/var/log/containers", st.Dir)
	if st.Network != "" {
		cached, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", st.Network+"-*"))
		for _, f := range cached {
			os.Remove(f)
		}
	}
	// 7. The directory, unless something is still mounted inside it:
	// RemoveAll would then delete through the mount (a hostPath volume
	// could be the host's own files).
	if left := mountsUnder(st.Dir); len(left) > 0 {
		errs = append(errs, fmt.Errorf("node: not removing %s: still mounted: %s", st.Dir, strings.Join(left, ", ")))
	} else if err := os.RemoveAll(st.Dir); err != nil {
		errs = append(errs, fmt.Errorf("node: removing %s: %w", st.Dir, err))
	}
	// 8. Host settings and directories, when this was the last node.
	if err := restoreHost(filepath.Dir(st.Dir), st.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killReferencing SIGKILLs every process with an argument naming dir (or a
// path inside it), until none is left.
func killReferencing(dir string) error {
	self := os.Getpid()
	return untilGone(10*time.Second, "processes using "+dir, func() []int {
		var pids []int
		for _, pid := range allPIDs() {
			if pid == self {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil || len(b) == 0 {
				continue // gone, or a zombie: nothing to kill
			}
			for _, arg := range strings.Split(string(b), "\x00") {
				if strings.Contains(arg, dir+"/") || strings.HasSuffix(arg, dir) {
					pids = append(pids, pid)
					break
				}
			}
		}
		return pids
	})
}

// killCgroup SIGKILLs every process in the node's cgroup tree, in every
// hierarchy, until the tree is empty.
func killCgroup(name string) error {
	return untilGone(10*time.Second, "processes in cgroup "+name, func() []int {
		seen := map[int]bool{}
		for _, h := range cgroupHierarchies() {
			filepath.WalkDir(filepath.Join(h, name), func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				if err != nil {
					return nil
				}
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
						seen[pid] = true
					}
				}
				return nil
			})
		}
		pids := make([]int, 0, len(seen))
		for p := range seen {
			// A zombie stays listed until its parent reaps it: not ours to
			// wait for.
			if !isZombie(p) {
				pids = append(pids, p)
			}
		}
		return pids
	})
}

// untilGone kills what list returns until it returns nothing or timeout.
func untilGone(timeout time.Duration, what string, list func() []int) error {
	deadline := time.Now().Add(timeout)
	for {
		pids := list()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node: %s still running after %s: %v", what, timeout, pids)
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond) // let the kernel deliver and reap
	}
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

// mountsUnder lists mount points at or below dir, deepest first, from this
// process's mount table.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i], "/") > strings.Count(out[j], "/")
	})
	return out
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder lazily unmounts everything below dir, deepest first. Lazy
// (MNT_DETACH) because a mount still busy in some dying process would
// otherwise fail; it is gone from the tree at once either way. Stacked
// mounts on one point need several passes.
func unmountUnder(dir string) error {
	var last []string
	for range 10 {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		last = mps
		for _, mp := range mps {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	return fmt.Errorf("node: could not unmount under %s: %s", dir, strings.Join(last, ", "))
}

// cgroupHierarchies are the mounted cgroup hierarchies: one per v1
// controller (plus name=systemd and the hybrid unified one) on cgroup v1,
// or /sys/fs/cgroup itself on v2.
func cgroupHierarchies() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, " - ")
		if i < 0 {
			continue
		}
		fields, post := strings.Fields(line[:i]), strings.Fields(line[i+3:])
		if len(fields) < 5 || len(post) < 1 {
			continue
		}
		if (post[0] == "cgroup" || post[0] == "cgroup2") && strings.HasPrefix(fields[4], "/sys/fs/cgroup") {
			out = append(out, unescapeMountPath(fields[4]))
		}
	}
	return out
}

// createCgroup creates the node's cgroup in every hierarchy: the kubelet's
// cgroupRoot must exist in each before it starts. A new v1 cpuset cgroup
// has no CPUs or memory nodes, so it gets its parent's.
func createCgroup(name string) error {
	for _, h := range cgroupHierarchies() {
		p := filepath.Join(h, name)
		if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("node: creating cgroup %s: %w", p, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, err := os.ReadFile(filepath.Join(p, f))
			if err != nil || strings.TrimSpace(string(cur)) != "" {
				continue
			}
			parent, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(p, f), parent, 0o644); err != nil {
				return fmt.Errorf("node: %s/%s: %w", p, f, err)
			}
		}
	}
	return nil
}

// removeCgroup removes the node's cgroup tree in every hierarchy, deepest
// first (cgroupfs only removes empty directories, one at a time).
func removeCgroup(name string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, name)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.SliceStable(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
		for _, d := range dirs {
			var err error
			// EBUSY while the last killed processes are being reaped.
			for deadline := time.Now().Add(5 * time.Second); ; {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("node: removing cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeBridge deletes the bridge and the veths enslaved to it (their pod
// ends die with the network namespaces; deleting them here does not wait
// for the kernel to get there).
func removeBridge(name string) error {
	if _, err := os.Stat(filepath.Join("/sys/class/net", name)); err != nil {
		return nil
	}
	links, _ := filepath.Glob("/sys/class/net/*/master")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && filepath.Base(target) == name {
			exec.Command("ip", "link", "delete", filepath.Base(filepath.Dir(l))).Run()
		}
	}
	if out, err := exec.Command("ip", "link", "delete", name).CombinedOutput(); err != nil {
		if _, serr := os.Stat(filepath.Join("/sys/class/net", name)); serr == nil {
			return fmt.Errorf("node: deleting bridge %s: %w: %s", name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// removeLinksInto removes the symlinks in dir that point into target.
func removeLinksInto(dir, target string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if dest, err := os.Readlink(p); err == nil && strings.HasPrefix(dest, target+"/") {
			os.Remove(p)
		}
	}
}
