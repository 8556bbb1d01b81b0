package cluster

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// KubernetesVersion is the one Kubernetes version the tests run against; the
// nested module test/k8s pins it.
const KubernetesVersion = "v1.37.2"

// Versions of the other components built from the module proxy.
const (
	KwokVersion       = "v0.8.0"
	ContainerdVersion = "v2.4.2"
)

// Bins holds the paths of the built binaries.
type Bins struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kubelet, Kubectl string
}

// SourceDir returns the project's root, found from this file's location so
// tests and `rollbook demo` run from a checkout find the nested module.
func SourceDir() (string, error) {
	if d := os.Getenv("ROLLBOOK_SOURCE"); d != "" {
		return d, nil
	}
	_, file, _, ok := runtime.Caller(0)
	if ok {
		root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
		if _, err := os.Stat(filepath.Join(root, "test", "k8s", "go.mod")); err == nil {
			return root, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "test", "k8s", "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("cluster: cannot find the Rollbook source tree (test/k8s/go.mod); run from a checkout or set ROLLBOOK_SOURCE")
		}
	}
}

// CacheDir is where built binaries live: the user's cache directory, or
// ROLLBOOK_CACHE when set (CI points it at a persisted folder).
func CacheDir() (string, error) {
	if d := os.Getenv("ROLLBOOK_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cluster: no cache directory: %w", err)
	}
	return filepath.Join(d, "rollbook"), nil
}

// KubernetesBinaries builds etcd and the Kubernetes components from the
// nested module test/k8s, once: the result is cached under a directory keyed
// by the module's content, so a changed pin rebuilds and nothing else does.
func KubernetesBinaries(ctx context.Context, progress io.Writer) (Bins, error) {
	src, err := SourceDir()
	if err != nil {
		return Bins{}, err
	}
	mod := filepath.Join(src, "test", "k8s")
	key, err := hashTree(mod, ldflags)
	if err != nil {
		return Bins{}, err
	}
	dir, err := cachedBuild(ctx, progress, "kubernetes-"+KubernetesVersion+"-"+key,
		[]string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"},
		func(ctx context.Context, out string) (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, "go", "build", "-v", "-ldflags", ldflags, "-o", out+string(filepath.Separator), "./...")
			cmd.Dir = mod
			return cmd, nil
		})
	if err != nil {
		return Bins{}, err
	}
	return Bins{
		Etcd:              filepath.Join(dir, "etcd"),
		APIServer:         filepath.Join(dir, "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"),
		Scheduler:         filepath.Join(dir, "kube-scheduler"),
		Kubelet:           filepath.Join(dir, "kubelet"),
		Kubectl:           filepath.Join(dir, "kubectl"),
	}, nil
}

// GoInstall builds module packages at a version (go install pkg@version)
// into the cache, once, and returns the directory holding the binaries.
func GoInstall(ctx context.Context, progress io.Writer, name string, env []string, pkgs ...string) (string, error) {
	var bins []string
	for _, p := range pkgs {
		bins = append(bins, filepath.Base(strings.SplitN(p, "@", 2)[0]))
	}
	return cachedBuild(ctx, progress, name, bins, func(ctx context.Context, out string) (*exec.Cmd, error) {
		args := append([]string{"install", "-v", "-trimpath"}, pkgs...)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Env = append(append(os.Environ(), "GOBIN="+out, "GOFLAGS=-mod=mod"), env...)
		cmd.Dir = os.TempDir()
		return cmd, nil
	})
}

// ModuleBuild builds one main package of a module at a version into the
// cache, once, and returns the binary. It builds inside a writable copy
// of the module's own tree, so the module's go.mod (its replace
// directives included) and go.sum are the ones its authors tested: go
// install pkg@version refuses a module with replace directives.
func ModuleBuild(ctx context.Context, progress io.Writer, name, module, version, pkg string) (string, error) {
	bin := filepath.Base(pkg)
	var src string
	defer func() {
		if src != "" {
			os.RemoveAll(src)
		}
	}()
	dir, err := cachedBuild(ctx, progress, name, []string{bin}, func(ctx context.Context, out string) (*exec.Cmd, error) {
		dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
		dl.Dir, dl.Env = os.TempDir(), append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		raw, runErr := dl.Output()
		var mod struct{ Dir, Error string }
		if err := json.Unmarshal(raw, &mod); err != nil || mod.Error != "" || runErr != nil {
			return nil, fmt.Errorf("cluster: go mod download %s@%s: %v %s", module, version, runErr, mod.Error)
		}
		var err error
		if src, err = os.MkdirTemp("", name+"-src-"); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		tree := filepath.Join(src, "module")
		if err := os.CopyFS(tree, os.DirFS(mod.Dir)); err != nil {
			return nil, fmt.Errorf("cluster: copying %s: %w", mod.Dir, err)
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-v", "-trimpath", "-o", filepath.Join(out, bin), "./"+pkg)
		cmd.Dir, cmd.Env = tree, append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		return cmd, nil
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, bin), nil
}

// cachedBuild runs build into a fresh directory and renames it into place,
// so an interrupted build never leaves half a set of binaries that a later
// run would trust. A file lock keeps parallel test packages from building
// the same thing twice.
func cachedBuild(ctx context.Context, progress io.Writer, name string, bins []string, build func(context.Context, string) (*exec.Cmd, error)) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	final := filepath.Join(cache, name)
	if haveAll(final, bins) {
		return final, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if haveAll(final, bins) { // built by another process while we waited
		return final, nil
	}
	tmp, err := os.MkdirTemp(cache, name+".building-")
	if err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	defer os.RemoveAll(tmp)
	if progress == nil {
		progress = io.Discard
	}
	fmt.Fprintf(progress, "building %s (once; cached in %s)\n", strings.Join(bins, ", "), final)
	start := time.Now()
	cmd, err := build(ctx, tmp)
	if err != nil {
		return "", err
	}
	logPath := filepath.Join(cache, name+".build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	defer logf.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var compiled atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			compiled.Add(1)
		}
	}()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	if err := cmd.Start(); err != nil {
		pw.Close()
		return "", fmt.Errorf("cluster: starting build of %s: %w", name, err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	for {
		select {
		case <-tick.C:
			fmt.Fprintf(progress, "  %s: %d packages compiled, %s\n", name, compiled.Load(), time.Since(start).Round(time.Second))
			continue
		case err = <-waitErr:
		}
		break
	}
	pw.Close()
	<-done
	if err != nil {
		return "", fmt.Errorf("cluster: building %s failed: %w\n%s", name, err, Tail(logPath, 30))
	}
	if !haveAll(tmp, bins) {
		return "", fmt.Errorf("cluster: build of %s did not produce %v\n%s", name, bins, Tail(logPath, 30))
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	fmt.Fprintf(progress, "built %s in %s\n", name, time.Since(start).Round(time.Second))
	return final, nil
}

func haveAll(dir string, bins []string) bool {
	for _, b := range bins {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// lockFile takes an exclusive flock, polling so ctx can end the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("cluster: waiting for build lock %s: %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// ldflags stamps the version, as the upstream release build does: without
// it every component reports v0.0.0-master and clients that compare server
// versions misjudge the cluster.
const ldflags = "-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion +
	" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" +
	" -X k8s.io/component-base/version.gitTreeState=clean"

// hashTree hashes the files of a small source tree (go.mod, go.sum, mains)
// and any extra build inputs.
func hashTree(dir string, extra ...string) (string, error) {
	h := sha256.New()
	for _, e := range extra {
		fmt.Fprintf(h, "%s\x00", e)
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("cluster: hashing %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// Tail returns the last n lines of a file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log at %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- tail of " + path + " ---\n" + strings.Join(lines, "\n")
}

// HelmVersion is the helm CLI the chart tests render with.
const HelmVersion = "v3.22.0"

// Helm builds the helm CLI into the cache (once) and returns its path.
func Helm(ctx context.Context, progress io.Writer) (string, error) {
	dir, err := GoInstall(ctx, progress, "helm-"+HelmVersion, nil, "helm.sh/helm/v3/cmd/helm@"+HelmVersion)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "helm"), nil
}
