package webhook

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/test/cluster"
)

// NamespaceLabel selects the namespaces an injector acts in; its value is
// the injector's Name (Enable sets it). A value per injector means two
// injectors in one cluster never both act on a pod, and stopping one
// cannot make the apiserver refuse pods in another's namespaces.
const NamespaceLabel = "rollbook.dev/test-inject"

// Options configure an Injector. The zero value injects the default
// sidecar and adds no labels.
type Options struct {
	// SidecarImage is the mesh-proxy container's image
	// (DefaultSidecarImage when empty).
	SidecarImage string
	// PodLabels are added to every injected pod that lacks the key: labels
	// that admission sets and no template had, like the zone a real
	// cluster copies from the node (topology.kubernetes.io/zone: zone-a).
	PodLabels map[string]string
}

func (o *Options) validate() error {
	if o.SidecarImage == "" {
		o.SidecarImage = DefaultSidecarImage
	}
	if strings.ContainsAny(o.SidecarImage, " \t\n") {
		return fmt.Errorf("webhook: sidecar image %q has white space", o.SidecarImage)
	}
	for k, v := range o.PodLabels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("webhook: pod label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("webhook: pod label %s value %q: %s", k, v, strings.Join(errs, "; "))
		}
	}
	return nil
}

// Injector is a running mutating admission webhook on 127.0.0.1 and the
// MutatingWebhookConfiguration that routes pod creations to it.
type Injector struct {
	// Name is the MutatingWebhookConfiguration's name and the NamespaceLabel
	// value of the namespaces it injects into.
	Name string
	// URL is what the apiserver calls.
	URL string

	opts     Options
	cs       kubernetes.Interface
	srv      *http.Server
	served   chan error
	injected atomic.Int64
	stopOnce sync.Once
	stopErr  error
}

// Start serves the webhook on a free loopback port with a certificate of a
// CA made for it, and registers it with the apiserver of cfg: pods CREATE
// only, failurePolicy Fail (a pod of a selected namespace is never created
// uninjected), sideEffects None (dry runs are injected too). Stop undoes
// both.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (*Injector, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	tlsMaterial, err := newServing(time.Now())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	in := &Injector{
		Name:   "rollbook-test-injector-" + randomHex(4),
		URL:    "https://" + ln.Addr().String() + "/inject",
		opts:   opts,
		cs:     cs,
		served: make(chan error, 1),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /inject", in.serveInject)
	in.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{tlsMaterial.cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { in.served <- in.srv.ServeTLS(ln, "", "") }()

	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, in.configuration(tlsMaterial.caPEM), metav1.CreateOptions{}); err != nil {
		in.srv.Close()
		return nil, fmt.Errorf("webhook: registering %s: %w", in.Name, err)
	}
	return in, nil
}

func (in *Injector) configuration(caPEM []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	scope := admissionregistrationv1.NamespacedScope
	// Small: a webhook on loopback answers in milliseconds, and a hung one
	// should fail a test's pod creation quickly rather than at the
	// apiserver's 30 s default.
	timeout := int32(5)
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: in.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "inject.mesh.example",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &in.URL, CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope,
				},
			}},
			FailurePolicy:           &fail,
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{NamespaceLabel: in.Name}},
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// Enable labels namespace ns for this injector and returns once the
// apiserver injects pods created in it.
//
// NB: the apiserver matches namespaceSelector against its own namespace
// cache and learns of the configuration through an informer; until both
// have caught up, pods pass uninjected. Enable polls with dry-run pods
// (nothing is stored) until one comes back injected.
func (in *Injector) Enable(ctx context.Context, ns string) error {
	if err := cluster.WaitDefaultServiceAccount(ctx, in.cs, ns); err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{NamespaceLabel: in.Name}}})
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	if _, err := in.cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("webhook: labelling namespace %s: %w", ns, err)
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "registry.example/probe:1"}}},
	}
	err = cluster.Poll(ctx, time.Minute, func() error {
		p, err := in.cs.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if p.Annotations[InjectedAnnotation] != "true" {
			return errors.New("a dry-run pod came back uninjected")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook: enabling %s in namespace %s: %w", in.Name, ns, err)
	}
	return nil
}

// Injected counts the pods this injector has patched, dry runs excluded.
func (in *Injector) Injected() int64 { return in.injected.Load() }

// Stop deletes the configuration, then stops the server: in that order,
// so that the apiserver stops calling before the webhook stops answering.
// It is idempotent.
//
// NB: the apiserver drops the configuration from its informer a moment
// after the delete; a pod created in an enabled namespace in that moment
// is refused (failurePolicy Fail). Stop at the end of what uses it.
func (in *Injector) Stop(ctx context.Context) error {
	in.stopOnce.Do(func() {
		err := in.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, in.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			in.stopErr = fmt.Errorf("webhook: deleting %s: %w", in.Name, err)
		}
		if err := in.srv.Shutdown(ctx); err != nil {
			in.stopErr = errors.Join(in.stopErr, fmt.Errorf("webhook: stopping the server: %w", err))
		}
		if err := <-in.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			in.stopErr = errors.Join(in.stopErr, fmt.Errorf("webhook: serving: %w", err))
		}
	})
	return in.stopErr
}

// Install starts an injector on c for the test t and stops it when t
// ends.
func Install(t testing.TB, c *cluster.Cluster, opts Options) *Injector {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := Start(ctx, c.Config(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := in.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return in
}

// Namespace is c.Namespace(t) enabled for this injector: every pod
// created in it is injected.
func (in *Injector) Namespace(t testing.TB, c *cluster.Cluster) string {
	t.Helper()
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := in.Enable(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

// serveInject answers one AdmissionReview. A request it cannot read gets
// an HTTP error, which the apiserver turns into a refusal (failurePolicy
// Fail); a pod it cannot decode is refused with the reason.
func (in *Injector) serveInject(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "webhook: reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("webhook: not an AdmissionReview with a request (%v)", err), http.StatusBadRequest)
		return
	}
	resp := in.review(review.Request)
	resp.UID = review.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		http.Error(w, "webhook: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// review decides one request: the JSON patch that injects a new pod, or
// an allow without a patch for anything else.
func (in *Injector) review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create || req.Kind != (metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}) || req.SubResource != "" {
		return allow
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return &admissionv1.AdmissionResponse{Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusBadRequest, Message: "webhook: decoding the pod: " + err.Error(),
		}}
	}
	ops := podPatch(&pod, in.opts.SidecarImage, in.opts.PodLabels, string(req.UID))
	if len(ops) == 0 {
		return allow
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return &admissionv1.AdmissionResponse{Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: "webhook: encoding the patch: " + err.Error(),
		}}
	}
	if req.DryRun == nil || !*req.DryRun {
		in.injected.Add(1)
	}
	pt := admissionv1.PatchTypeJSONPatch
	allow.Patch, allow.PatchType = patch, &pt
	return allow
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
