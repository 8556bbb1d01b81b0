package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"rollbook.dev/rollbook/test/cluster"
)

// TestChartCRDIsCopy: Helm installs CRDs only from the chart's crds/, so
// the chart carries a copy of crd.yaml; it must not drift.
func TestChartCRDIsCopy(t *testing.T) {
	b, err := os.ReadFile("chart/crds/inplacerollouts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, CRD) {
		t.Fatal("chart/crds/inplacerollouts.yaml differs from crd.yaml: cp deploy/crd.yaml deploy/chart/crds/inplacerollouts.yaml")
	}
}

// TestManifestsDecode: each embedded manifest holds what its doc says.
func TestManifestsDecode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		manifest []byte
		want     string
	}{
		{"crd.yaml", CRD, "CustomResourceDefinition/inplacerollouts.rollbook.dev"},
		{"rbac.yaml", RBAC, "ServiceAccount/rollbook ClusterRole/rollbook ClusterRoleBinding/rollbook Role/rollbook-leader-election RoleBinding/rollbook-leader-election ClusterRole/rollbook-journal-reader"},
		{"tenancy.yaml", Tenancy, "ClusterRole/rollbook-edit ClusterRole/rollbook-view ValidatingAdmissionPolicy/rollbook-rollout-author-may-patch-pods ValidatingAdmissionPolicyBinding/rollbook-rollout-author-may-patch-pods"},
		{"deployment.yaml", Controller, "Namespace/rollbook-system Service/rollbook StatefulSet/rollbook PodDisruptionBudget/rollbook"},
		{"nats/nats.yaml", NATS, "ConfigMap/nats Service/nats-headless Service/nats StatefulSet/nats PodDisruptionBudget/nats"},
	} {
		objs, err := Decode(tc.manifest)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.GetKind()+"/"+o.GetName())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s holds %s, want %s", tc.name, strings.Join(got, " "), tc.want)
		}
	}
}

// TestManifestsServerDryRun: the apiserver accepts every manifest as
// written (strict field validation: a misspelt field fails), and the pods
// of both StatefulSets pass the restricted pod security profile that
// deployment.yaml puts on rollbook-system.
func TestManifestsServerDryRun(t *testing.T) {
	c := cluster.Shared(t)
	ensureSystemNamespace(t)
	ctx := context.Background()
	for name, m := range map[string][]byte{"rbac.yaml": RBAC, "tenancy.yaml": Tenancy, "deployment.yaml": Controller, "nats/nats.yaml": NATS} {
		objs, err := Apply(ctx, c.Config(), m, ApplyOptions{DryRun: true})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, o := range objs {
			if o.GetKind() == "StatefulSet" {
				podFromTemplate(t, name, o)
			}
		}
	}
}

// podFromTemplate dry-run creates a pod from a StatefulSet's template in
// rollbook-system, where PodSecurity admission enforces "restricted" (on
// the StatefulSet itself it would only warn).
func podFromTemplate(t *testing.T, manifest string, sts *unstructured.Unstructured) {
	t.Helper()
	tmpl, _, _ := unstructured.NestedMap(sts.Object, "spec", "template")
	b, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(b, &pod); err != nil {
		t.Fatalf("%s: template of %s: %v", manifest, sts.GetName(), err)
	}
	pod.Name = sts.GetName() + "-0"
	// The volume claim template becomes a claim the pod refers to.
	for _, vct := range mustSlice(sts, "spec", "volumeClaimTemplates") {
		name, _, _ := unstructured.NestedString(vct.(map[string]any), "metadata", "name")
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name + "-" + pod.Name},
		}})
	}
	cs := cluster.Shared(t).Clientset()
	// NB: the ServiceAccount admission plugin looks the pod's account up
	// even on a dry run, and a dry-run apply of the manifests created
	// none; so the account the manifests would create (rbac.yaml's, the
	// chart's serviceaccount.yaml) is created here for real.
	if sa := pod.Spec.ServiceAccountName; sa != "" && sa != "default" {
		_, err := cs.CoreV1().ServiceAccounts(systemNamespace).Create(context.Background(),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: service account %s: %v", manifest, sa, err)
		}
	}
	_, err = cs.CoreV1().Pods(systemNamespace).Create(context.Background(), &pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Errorf("%s: a pod of StatefulSet %s is refused: %v", manifest, sts.GetName(), err)
	}
}

func mustSlice(u *unstructured.Unstructured, path ...string) []any {
	s, _, _ := unstructured.NestedSlice(u.Object, path...)
	return s
}

// TestHelmChart renders the chart with helm, when helm is on PATH (it is
// not a build dependency), and dry-runs the result against the apiserver,
// cluster-wide and namespace-scoped. The chart's rules must be those of
// rbac.yaml.
func TestHelmChart(t *testing.T) {
	helm, err := cluster.Helm(context.Background(), os.Stderr)
	if err != nil {
		t.Fatalf("building helm: %v", err)
	}
	c := cluster.Shared(t)
	ensureSystemNamespace(t)
	ctx := context.Background()
	shop := c.Namespace(t)
	render := func(args ...string) []byte {
		t.Helper()
		args = append([]string{"template", "rb", "chart", "--namespace", systemNamespace, "--kube-version", cluster.KubernetesVersion}, args...)
		out, err := exec.Command(helm, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for name, out := range map[string][]byte{
		"cluster-wide": render(),
		"namespace-scoped": render("--set", "namespaces={"+shop+"}", "--set", "nats.url=tls://nats:4222", "--set", "nats.credsSecret=nats-creds",
			"--set", "nats.stream=ROLLBOOK-SHOP", "--set", "nats.subjectPrefix=rollbook.shop", "--set", "nats.streamWait=5s", "--set", "replicaCount=1",
			"--set", "nats.tls.secret=nats-tls", "--set", "nats.tls.clientCert=true",
			"--set", "otel.endpoint=http://collector:4318", "--set", "otel.headersSecret=otel-headers", "--set", "otel.serviceName=rollbook-prod",
			"--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=http://proxy:3128"),
	} {
		objs, err := Apply(ctx, c.Config(), out, ApplyOptions{DryRun: true})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// The controller's rules: a ClusterRole, or a Role per managed
		// namespace, plus the nodes ClusterRole.
		var rules []any
		for _, o := range objs {
			r, _, _ := unstructured.NestedSlice(o.Object, "rules")
			switch {
			case o.GetKind() == "StatefulSet":
				podFromTemplate(t, "chart "+name, o)
				if name == "namespace-scoped" {
					checkValuesReachPod(t, o)
				}
			case o.GetKind() == "ClusterRole" && strings.HasSuffix(o.GetName(), "-journal-reader"):
				// The journal API's readers' role: checked apart.
				if !sameRules(r, journalReaderRules(t)) {
					t.Errorf("%s: the chart's %s rules %v differ from rbac.yaml's rollbook-journal-reader", name, o.GetName(), r)
				}
			case o.GetName() != "rb-rollbook" && o.GetName() != "rb-rollbook-nodes":
			case o.GetKind() == "ClusterRole" && name == "namespace-scoped" && grantsPods(r):
				t.Errorf("%s: ClusterRole %s grants rights on pods", name, o.GetName())
			case o.GetKind() == "ClusterRole", o.GetKind() == "Role" && o.GetNamespace() == shop:
				rules = append(rules, r...)
			}
		}
		if want := clusterRules(t); !sameRules(rules, want) {
			t.Errorf("%s: the chart's controller rules\n%v\ndiffer from rbac.yaml's\n%v", name, rules, want)
		}
		if name == "cluster-wide" {
			chartTenancyIsCopy(t, objs)
		}
	}
}

func grantsPods(rules []any) bool {
	for _, r := range rules {
		for _, res := range r.(map[string]any)["resources"].([]any) {
			if strings.HasPrefix(res.(string), "pods") {
				return true
			}
		}
	}
	return false
}

// chartTenancyIsCopy: the chart's user roles and admission policy are
// tenancy.yaml's, under the release's names; both as the apiserver answers
// a dry run, with its defaults.
func chartTenancyIsCopy(t *testing.T, chart []*unstructured.Unstructured) {
	t.Helper()
	want, err := Apply(context.Background(), cluster.Shared(t).Config(), Tenancy, ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range chart {
		byKind[o.GetKind()+"/"+strings.TrimPrefix(o.GetName(), "rb-rollbook-")] = o
	}
	for _, w := range want {
		name := w.GetKind() + "/" + strings.TrimPrefix(w.GetName(), "rollbook-")
		got := byKind[name]
		if got == nil {
			t.Errorf("the chart renders no %s", name)
			continue
		}
		field := "spec"
		if w.GetKind() == "ClusterRole" {
			field = "rules"
			for k, v := range w.GetLabels() {
				if strings.HasPrefix(k, "rbac.authorization.k8s.io/") && got.GetLabels()[k] != v {
					t.Errorf("chart %s lacks label %s=%s", name, k, v)
				}
			}
		}
		gv, wv := got.Object[field], w.Object[field]
		if w.GetKind() == "ValidatingAdmissionPolicyBinding" {
			unstructured.RemoveNestedField(got.Object, "spec", "policyName")
			unstructured.RemoveNestedField(w.Object, "spec", "policyName")
			gv, wv = got.Object[field], w.Object[field]
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("chart %s %s\n%v\ndiffers from tenancy.yaml's\n%v", name, field, gv, wv)
		}
	}
}

func clusterRules(t *testing.T) []any {
	objs, err := Decode(RBAC)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" {
			r, _, _ := unstructured.NestedSlice(o.Object, "rules")
			return r
		}
	}
	t.Fatal("rbac.yaml has no ClusterRole")
	return nil
}

func journalReaderRules(t *testing.T) []any {
	objs, err := Decode(RBAC)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && o.GetName() == "rollbook-journal-reader" {
			r, _, _ := unstructured.NestedSlice(o.Object, "rules")
			return r
		}
	}
	t.Fatal("rbac.yaml has no ClusterRole rollbook-journal-reader")
	return nil
}

// sameRules compares rule lists as sets of (group, resource, verb).
func sameRules(a, b []any) bool {
	flat := func(rules []any) map[string]bool {
		m := map[string]bool{}
		for _, r := range rules {
			r := r.(map[string]any)
			for _, g := range r["apiGroups"].([]any) {
				for _, res := range r["resources"].([]any) {
					for _, v := range r["verbs"].([]any) {
						m[g.(string)+"/"+res.(string)+":"+v.(string)] = true
					}
				}
			}
		}
		return m
	}
	return reflect.DeepEqual(flat(a), flat(b))
}

// checkValuesReachPod: the chart's NATS stream, NATS TLS, OTel and extraEnv
// values end up where rollbook run and the OTel SDK read them.
func checkValuesReachPod(t *testing.T, sts *unstructured.Unstructured) {
	t.Helper()
	b, err := json.Marshal(sts.Object)
	if err != nil {
		t.Fatal(err)
	}
	rendered := string(b)
	for _, want := range []string{
		`"--stream=ROLLBOOK-SHOP"`, `"--subject-prefix=rollbook.shop"`, `"--stream-wait=5s"`,
		`"--nats-ca=/etc/rollbook/nats-tls/ca.crt"`, `"--nats-cert=/etc/rollbook/nats-tls/tls.crt"`, `"--nats-key=/etc/rollbook/nats-tls/tls.key"`,
		`"secretName":"nats-tls"`, `"mountPath":"/etc/rollbook/nats-tls"`,
		`{"name":"OTEL_EXPORTER_OTLP_ENDPOINT","value":"http://collector:4318"}`,
		`{"name":"OTEL_SERVICE_NAME","value":"rollbook-prod"}`,
		`{"name":"OTEL_EXPORTER_OTLP_HEADERS","valueFrom":{"secretKeyRef":{"key":"headers","name":"otel-headers"}}}`,
		`{"name":"HTTPS_PROXY","value":"http://proxy:3128"}`,
		`"--namespaces=`,
	} {
		if !strings.Contains(rendered, want) {
			t.Errorf("the namespace-scoped StatefulSet lacks %s", want)
		}
	}
	if strings.Contains(rendered, "--exclude-namespaces") {
		t.Error("a namespaced install passes --exclude-namespaces")
	}
}
