package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/test/cluster"
)

// OpenKruise, the peer of the same-run comparison, is built from the Go
// module proxy at run time, like the control plane: its source is never
// part of this repository.
const (
	kruiseModule  = "github.com/openkruise/kruise"
	kruiseVersion = "v1.9.0"
	// kruiseNamespace is where its webhook controller looks for its
	// Secret and ServiceAccount (POD_NAMESPACE).
	kruiseNamespace = "kruise-system"
	// kruiseUserAgent prefixes the user agent of every client of
	// kruise-manager ("kruise-manager", "kruise-manager/<name>").
	kruiseUserAgent = "kruise-manager"
)

var (
	cloneSets      = schema.GroupVersionResource{Group: "apps.kruise.io", Version: "v1beta1", Resource: "clonesets"}
	mutatingHooks  = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	validatingHook = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
)

// kruiseBuild is a built kruise-manager and the module tree it was built
// from (whose config/ holds the CRDs, RBAC and webhook manifests).
type kruiseBuild struct {
	Bin, Src string
}

// buildKruise builds kruise-manager once into the cache (<cache>/kruise-<version>):
// go mod download of the module, a writable copy of its tree, one line
// changed so its webhook server binds loopback only (upstream binds
// 0.0.0.0), go build. ~8 minutes cold on two cores; a later call returns
// the cached binary at once.
func buildKruise(ctx context.Context, env *benchEnv) (kruiseBuild, error) {
	cache, err := cluster.CacheDir()
	if err != nil {
		return kruiseBuild{}, err
	}
	name := "kruise-" + kruiseVersion
	final := filepath.Join(cache, name)
	out := kruiseBuild{Bin: filepath.Join(final, "kruise-manager"), Src: filepath.Join(final, "src")}
	if executable(out.Bin) {
		return out, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return kruiseBuild{}, fmt.Errorf("bench: %w", err)
	}
	unlock, err := flock(ctx, filepath.Join(cache, name+".lock"))
	if err != nil {
		return kruiseBuild{}, err
	}
	defer unlock()
	if executable(out.Bin) { // built by another run while we waited
		return out, nil
	}
	tmp, err := os.MkdirTemp(cache, name+".building-")
	if err != nil {
		return kruiseBuild{}, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	goEnv := append(os.Environ(),
		// The checksum database answers 404 for this module here; its
		// dependencies are still checked.
		"GONOSUMDB=github.com/openkruise",
		"GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local")

	env.logf("downloading %s@%s from the module proxy", kruiseModule, kruiseVersion)
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", kruiseModule+"@"+kruiseVersion)
	dl.Dir, dl.Env = tmp, goEnv
	var dlOut, dlErr bytes.Buffer
	dl.Stdout, dl.Stderr = &dlOut, &dlErr
	runErr := dl.Run()
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(dlOut.Bytes(), &mod); err != nil || mod.Error != "" || runErr != nil {
		// NB: the proxy answers 403 for some versions; the pin then has
		// to step back a version.
		return kruiseBuild{}, fmt.Errorf("bench: go mod download %s@%s: %v %s %s", kruiseModule, kruiseVersion, runErr, mod.Error, dlErr.String())
	}
	src := filepath.Join(tmp, "src")
	if err := os.CopyFS(src, os.DirFS(mod.Dir)); err != nil {
		return kruiseBuild{}, fmt.Errorf("bench: copying %s: %w", mod.Dir, err)
	}
	if err := bindLoopback(filepath.Join(src, "main.go")); err != nil {
		return kruiseBuild{}, err
	}

	logPath := filepath.Join(cache, name+".build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return kruiseBuild{}, fmt.Errorf("bench: %w", err)
	}
	defer logf.Close()
	env.logf("building kruise-manager %s (once; cached in %s; log %s)", kruiseVersion, final, logPath)
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(tmp, "kruise-manager"), ".")
	build.Dir, build.Env = src, goEnv
	build.Stdout, build.Stderr = logf, logf
	if err := build.Start(); err != nil {
		return kruiseBuild{}, fmt.Errorf("bench: building kruise-manager: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- build.Wait() }()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-tick.C:
			env.logf("  building kruise-manager: %s", time.Since(start).Round(time.Second))
		}
	}
	if err != nil {
		return kruiseBuild{}, fmt.Errorf("bench: building kruise-manager: %w\n%s", err, cluster.Tail(logPath, 30))
	}
	env.logf("built kruise-manager in %s", time.Since(start).Round(time.Second))
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return kruiseBuild{}, fmt.Errorf("bench: %w", err)
	}
	return out, nil
}

// bindLoopback changes the webhook server's bind host in kruise's main.go
// from every interface to loopback: WEBHOOK_HOST only names the host the
// apiserver calls, not the one the server listens on.
func bindLoopback(mainGo string) error {
	b, err := os.ReadFile(mainGo)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	const from, to = `Host:    "0.0.0.0",`, `Host:    "127.0.0.1",`
	if n := bytes.Count(b, []byte(from)); n != 1 {
		return fmt.Errorf("bench: %s: %d occurrences of %q, want 1 (a new kruise version needs a new edit)", mainGo, n, from)
	}
	if err := os.WriteFile(mainGo, bytes.Replace(b, []byte(from), []byte(to), 1), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&0o111 != 0
}

// flock takes an exclusive lock on path, polling so ctx can end the wait:
// two bench runs must not build into the same cache entry.
func flock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("bench: waiting for %s: %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// webhookCerts makes a CA and a serving certificate for 127.0.0.1 (and
// localhost) and
// writes them into dir under the names kruise's file cert writer reads
// (it keeps certificates it finds valid for WEBHOOK_HOST for six more
// months, so these are made for two years). It returns the CA in PEM.
func webhookCerts(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rollbook-bench-webhook-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		// Its own health check of the webhook server calls localhost.
		DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := ecKeyPEM(caKey)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for name, data := range map[string][]byte{
		"ca-key.pem": caKeyPEM, "ca-cert.pem": caPEM,
		"cert.pem": certPEM, "tls.crt": certPEM,
		"key.pem": keyPEM, "tls.key": keyPEM,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	return caPEM, nil
}

func ecKeyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// installKruise installs what kruise's kustomize build would, from its
// module tree, for a manager running on this machine: the CRDs its
// config/crd/kustomization.yaml lists, with the conversion webhooks it
// patches in; its manager ClusterRole bound to a ServiceAccount; its
// Mutating/ValidatingWebhookConfigurations (with their selector patches).
// Every webhook is called at https://127.0.0.1:<port>/<path>, trusting ca.
// It returns a client configuration of the manager's ServiceAccount.
func installKruise(ctx context.Context, c *cluster.Cluster, src string, port int, ca []byte) (*rest.Config, error) {
	dyn, err := dynamic.NewForConfig(c.Config())
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cs := c.Clientset()
	if err := createNamespace(ctx, cs, kruiseNamespace); err != nil {
		return nil, err
	}
	url := func(path string) string { return fmt.Sprintf("https://127.0.0.1:%d%s", port, path) }
	caBundle := base64.StdEncoding.EncodeToString(ca)

	// CRDs.
	var kz struct {
		Resources             []string `json:"resources"`
		PatchesStrategicMerge []string `json:"patchesStrategicMerge"`
	}
	if err := readYAML(filepath.Join(src, "config", "crd", "kustomization.yaml"), &kz); err != nil {
		return nil, err
	}
	conversions := map[string]map[string]any{} // CRD name → spec.conversion
	for _, p := range kz.PatchesStrategicMerge {
		objs, err := decodeFile(filepath.Join(src, "config", "crd", p))
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			conv, _, _ := unstructured.NestedMap(o.Object, "spec", "conversion")
			if conv == nil {
				return nil, fmt.Errorf("bench: kruise CRD patch %s has no spec.conversion", p)
			}
			// What kruise's own webhook controller would write with
			// WEBHOOK_HOST set: a URL, not a Service.
			if err := unstructured.SetNestedMap(conv, map[string]any{"url": url("/convert"), "caBundle": caBundle}, "webhook", "clientConfig"); err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			conversions[o.GetName()] = conv
		}
	}
	var crdNames []string
	for _, r := range kz.Resources {
		objs, err := decodeFile(filepath.Join(src, "config", "crd", r))
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if conv, ok := conversions[o.GetName()]; ok {
				if err := unstructured.SetNestedMap(o.Object, conv, "spec", "conversion"); err != nil {
					return nil, fmt.Errorf("bench: %w", err)
				}
			}
			if err := createObject(ctx, dyn.Resource(deploy.CRDs), o); err != nil {
				return nil, err
			}
			crdNames = append(crdNames, o.GetName())
		}
	}
	err = cluster.Poll(ctx, time.Minute, func() error {
		for _, n := range crdNames {
			crd, err := dyn.Resource(deploy.CRDs).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !established(crd) {
				return fmt.Errorf("CRD %s not Established yet", n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: kruise CRDs: %w", err)
	}

	// RBAC: the manager's ClusterRole (kustomize names it kruise-manager-role)
	// for a ServiceAccount of its own.
	roles, err := decodeFile(filepath.Join(src, "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	for _, r := range roles {
		if r.GetKind() != "ClusterRole" {
			continue
		}
		r.SetName("kruise-" + r.GetName())
		if err := createObject(ctx, dyn.Resource(rbacv1.SchemeGroupVersion.WithResource("clusterroles")), r); err != nil {
			return nil, err
		}
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: r.GetName()},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.GetName()},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "kruise-manager", Namespace: kruiseNamespace}},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("bench: binding %s: %w", r.GetName(), err)
		}
	}
	cfg, err := c.ServiceAccountConfig(ctx, kruiseNamespace, "kruise-manager")
	if err != nil {
		return nil, err
	}

	// Webhook configurations: manifests.yaml with patch_manifests.yaml's
	// selectors merged in by webhook name, named as kustomize names them.
	hooks, err := decodeFile(filepath.Join(src, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return nil, err
	}
	patches, err := decodeFile(filepath.Join(src, "config", "webhook", "patch_manifests.yaml"))
	if err != nil {
		return nil, err
	}
	for _, h := range hooks {
		var patch []any
		for _, p := range patches {
			if p.GetKind() == h.GetKind() && p.GetName() == h.GetName() {
				patch, _, _ = unstructured.NestedSlice(p.Object, "webhooks")
			}
		}
		whs, _, _ := unstructured.NestedSlice(h.Object, "webhooks")
		for _, w := range whs {
			wm := w.(map[string]any)
			for _, p := range patch {
				pm := p.(map[string]any)
				if pm["name"] != wm["name"] {
					continue
				}
				for k, v := range pm {
					wm[k] = v
				}
			}
			path, _, _ := unstructured.NestedString(wm, "clientConfig", "service", "path")
			if path == "" {
				return nil, fmt.Errorf("bench: kruise webhook %v has no service path", wm["name"])
			}
			wm["clientConfig"] = map[string]any{"url": url(path), "caBundle": caBundle}
		}
		if err := unstructured.SetNestedSlice(h.Object, whs, "webhooks"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		h.SetName("kruise-" + h.GetName())
		gvr := validatingHook
		if h.GetKind() == "MutatingWebhookConfiguration" {
			gvr = mutatingHooks
		}
		if err := createObject(ctx, dyn.Resource(gvr), h); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

func readYAML(path string, out any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := yaml.Unmarshal(b, out); err != nil {
		return fmt.Errorf("bench: %s: %w", path, err)
	}
	return nil
}

func decodeFile(path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	objs, err := deploy.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return objs, nil
}

func createObject(ctx context.Context, ri dynamic.ResourceInterface, o *unstructured.Unstructured) error {
	if _, err := ri.Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("bench: creating %s %s: %w", o.GetKind(), o.GetName(), err)
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// writeKubeconfig writes a kubeconfig for cfg (a bearer token, the
// apiserver's self-signed certificate not verified, as the cluster's own).
func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	kc.CurrentContext = "bench"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// startKruise runs kruise-manager with its defaults (client QPS 30, burst
// 50 unless qps/burst are positive) against kubeconfig, its webhook server
// on 127.0.0.1:port with the certificates in certDir, every other listener
// on loopback, and waits until its /readyz answers ok (its webhook serves;
// its controllers start right after).
func startKruise(ctx context.Context, env *benchEnv, bin, dir, kubeconfig string, port int, certDir string, qps, burst int) (*cluster.Process, error) {
	var ports [3]int
	for i := range ports {
		p, err := cluster.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	args := []string{
		"--enable-leader-election=false",
		"--metrics-addr=127.0.0.1:" + strconv.Itoa(ports[0]),
		"--health-probe-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
		// pprof is on by default, on every interface.
		"--pprof-addr=127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	if qps > 0 {
		args = append(args, "--rest-config-qps="+strconv.Itoa(qps))
	}
	if burst > 0 {
		args = append(args, "--rest-config-burst="+strconv.Itoa(burst))
	}
	penv := []string{
		"KUBECONFIG=" + kubeconfig,
		"WEBHOOK_HOST=127.0.0.1", "WEBHOOK_PORT=" + strconv.Itoa(port), "WEBHOOK_CERT_DIR=" + certDir,
		"POD_NAMESPACE=" + kruiseNamespace,
	}
	env.logf("starting %s %s", bin, strings.Join(args, " "))
	p, err := cluster.StartProcess("kruise-manager", dir, bin, args, penv)
	if err != nil {
		return nil, err
	}
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	hc := &http.Client{Timeout: 5 * time.Second}
	err = p.WaitFor(ctx, 3*time.Minute, "ready (/readyz)", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ready, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status + ": " + strings.TrimSpace(string(body)))
		}
		return nil
	})
	if err != nil {
		p.Stop(10 * time.Second)
		return nil, err
	}
	return p, nil
}
