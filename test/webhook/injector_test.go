package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/webhook"
)

func TestMain(m *testing.M) { cluster.Main(m) }

const (
	zoneLabel = "topology.kubernetes.io/zone"
	// saMountPath is where the ServiceAccount admission plugin mounts the
	// kube-api-access-* volume.
	saMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// plainPod has nothing the injector appends to: no labels, annotations,
// volumes, mounts or env, so every one of them is added whole.
func plainPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
}

// richPod has some of everything, so the injector appends to each, and
// its own zone label, which the injector's must not replace.
func richPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"app": "web", zoneLabel: "zone-b"},
			Annotations: map[string]string{"prometheus.io/scrape": "true"},
		},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{
				{
					Name: "app", Image: "registry.example/app:1",
					Env:          []corev1.EnvVar{{Name: "MODE", Value: "prod"}},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				},
				{Name: "log", Image: "registry.example/log:1"},
			},
		},
	}
}

func TestInjectsPodsOfEnabledNamespace(t *testing.T) {
	c := cluster.Shared(t)
	inj := webhook.Install(t, c, webhook.Options{PodLabels: map[string]string{zoneLabel: "zone-a"}})
	ns := inj.Namespace(t, c)
	for _, tc := range []struct {
		pod      *corev1.Pod
		wantZone string
	}{
		{plainPod("plain"), "zone-a"},
		{richPod("rich"), "zone-b"},
	} {
		got := createAndGet(t, c, ns, tc.pod)
		checkInjected(t, got, tc.pod, webhook.DefaultSidecarImage)
		if z := got.Labels[zoneLabel]; z != tc.wantZone {
			t.Errorf("pod %s: label %s = %q, want %q", got.Name, zoneLabel, z, tc.wantZone)
		}
		checkServiceAccount(t, got)
	}
	// Enable's dry-run probes are not counted.
	if n := inj.Injected(); n != 2 {
		t.Errorf("Injected() = %d, want 2", n)
	}

	// A pod that already carries the annotation (injected by another
	// injector, or by a reinvocation) is left as it is.
	pre := plainPod("pre-injected")
	pre.Annotations = map[string]string{webhook.InjectedAnnotation: "true"}
	got := createAndGet(t, c, ns, pre)
	if names := containerNames(got); !slices.Equal(names, []string{"app"}) {
		t.Errorf("pre-injected pod: containers %v, want [app]", names)
	}
}

func TestLeavesOtherNamespacesAlone(t *testing.T) {
	c := cluster.Shared(t)
	inj := webhook.Install(t, c, webhook.Options{PodLabels: map[string]string{zoneLabel: "zone-a"}})
	ns := c.Namespace(t) // not enabled
	got := createAndGet(t, c, ns, plainPod("plain"))
	if names := containerNames(got); !slices.Equal(names, []string{"app"}) {
		t.Errorf("containers %v, want [app]", names)
	}
	if _, ok := got.Annotations[webhook.InjectedAnnotation]; ok {
		t.Errorf("annotation %s set", webhook.InjectedAnnotation)
	}
	if _, ok := got.Labels[zoneLabel]; ok {
		t.Errorf("label %s set", zoneLabel)
	}
	if volume(got, webhook.VolumeName) != nil {
		t.Errorf("volume %s added", webhook.VolumeName)
	}
	if env(got.Spec.Containers[0], webhook.EnvName) != nil {
		t.Errorf("env %s added", webhook.EnvName)
	}
	// The default admission chain runs whatever the webhook does.
	checkServiceAccount(t, got)
	if n := inj.Injected(); n != 0 {
		t.Errorf("Injected() = %d, want 0", n)
	}
}

// TestInjectsStatefulSetPods: pods a workload controller creates are
// injected like any other, while the StatefulSet's template and the
// ControllerRevision that records it keep none of what admission added.
// Nothing runs the pods (no nodes): the apiserver's stored objects are
// what is asserted.
func TestInjectsStatefulSetPods(t *testing.T) {
	c := cluster.Shared(t)
	cs := c.Clientset()
	ctx := context.Background()
	inj := webhook.Install(t, c, webhook.Options{
		SidecarImage: "registry.example/mesh-proxy:1.1",
		PodLabels:    map[string]string{zoneLabel: "zone-a"},
	})
	ns := inj.Namespace(t, c)
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	replicas := int32(2)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			// Parallel: with OrderedReady the second pod waited for the
			// first to be Ready, which pods without a node never are.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			Template:            tmpl,
		},
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the StatefulSet: %v", err)
	}
	var pods []corev1.Pod
	cluster.Eventually(t, time.Minute, "the StatefulSet's 2 pods", func() error {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(list.Items) != 2 {
			return fmt.Errorf("%d pods", len(list.Items))
		}
		pods = list.Items
		return nil
	})
	submitted := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	for i := range pods {
		checkInjected(t, &pods[i], submitted, "registry.example/mesh-proxy:1.1")
		checkServiceAccount(t, &pods[i])
		if z := pods[i].Labels[zoneLabel]; z != "zone-a" {
			t.Errorf("pod %s: label %s = %q, want zone-a", pods[i].Name, zoneLabel, z)
		}
	}

	stored, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkUntouchedTemplate(t, "the StatefulSet's template", stored.Spec.Template)
	rev, err := cs.AppsV1().ControllerRevisions(ns).Get(ctx, pods[0].Labels[appsv1.ControllerRevisionHashLabelKey], metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the ControllerRevision of pod %s: %v", pods[0].Name, err)
	}
	var data struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &data); err != nil {
		t.Fatalf("ControllerRevision %s: %v", rev.Name, err)
	}
	checkUntouchedTemplate(t, "ControllerRevision "+rev.Name, data.Spec.Template)
}

// TestStopUnregisters: after Stop the configuration is gone, and pods of a
// namespace that was enabled are created again, uninjected, rather than
// refused for a webhook that no longer answers.
func TestStopUnregisters(t *testing.T) {
	c := cluster.Shared(t)
	cs := c.Clientset()
	ctx := context.Background()
	inj, err := webhook.Start(ctx, c.Config(), webhook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := c.Namespace(t)
	if err := inj.Enable(ctx, ns); err != nil {
		inj.Stop(ctx)
		t.Fatal(err)
	}
	if err := inj.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inj.Stop(ctx); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
	_, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, inj.Name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("configuration %s after Stop: %v, want NotFound", inj.Name, err)
	}
	// NB: the apiserver forgets the configuration through its informer, a
	// moment after the delete; until then it still calls the stopped
	// server and refuses the pod.
	cluster.Eventually(t, 30*time.Second, "a pod created after Stop", func() error {
		p, err := cs.CoreV1().Pods(ns).Create(ctx, plainPod("after-stop"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if names := containerNames(p); !slices.Equal(names, []string{"app"}) {
			return fmt.Errorf("containers %v", names)
		}
		return nil
	})
}

func TestOptionsAreValidated(t *testing.T) {
	cfg := cluster.Shared(t).Config()
	for _, opts := range []webhook.Options{
		{PodLabels: map[string]string{"not a key": "x"}},
		{PodLabels: map[string]string{zoneLabel: "not a value"}},
		{SidecarImage: "registry.example/mesh proxy"},
	} {
		inj, err := webhook.Start(context.Background(), cfg, opts)
		if err == nil {
			inj.Stop(context.Background())
			t.Errorf("Start(%+v) succeeded", opts)
			continue
		}
		if !strings.HasPrefix(err.Error(), "webhook: ") {
			t.Errorf("Start(%+v): %v, want a webhook: error", opts, err)
		}
	}
}

func createAndGet(t *testing.T, c *cluster.Cluster, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	cs := c.Clientset()
	if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s: %v", p.Name, err)
	}
	got, err := cs.CoreV1().Pods(ns).Get(context.Background(), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting pod %s: %v", p.Name, err)
	}
	return got
}

// checkInjected checks that got is submitted plus the injection: the
// sidecar last, the volume, a mount and the env var in every submitted
// container (after what it had), the annotation; and that nothing
// submitted was lost.
func checkInjected(t *testing.T, got, submitted *corev1.Pod, image string) {
	t.Helper()
	var errs []error
	wantNames := append(containerNames(submitted), webhook.SidecarName)
	if names := containerNames(got); !slices.Equal(names, wantNames) {
		errs = append(errs, fmt.Errorf("containers %v, want %v", names, wantNames))
	} else if img := got.Spec.Containers[len(wantNames)-1].Image; img != image {
		errs = append(errs, fmt.Errorf("sidecar image %s, want %s", img, image))
	}
	if v := volume(got, webhook.VolumeName); v == nil || v.EmptyDir == nil {
		errs = append(errs, fmt.Errorf("no emptyDir volume %s in %v", webhook.VolumeName, volumeNames(got)))
	}
	for _, sv := range submitted.Spec.Volumes {
		if volume(got, sv.Name) == nil {
			errs = append(errs, fmt.Errorf("submitted volume %s lost", sv.Name))
		}
	}
	for i, sc := range submitted.Spec.Containers {
		if i >= len(got.Spec.Containers) {
			break
		}
		gc := got.Spec.Containers[i]
		if m := mount(gc, webhook.VolumeName); m == nil || m.MountPath != webhook.MountPath {
			errs = append(errs, fmt.Errorf("container %s: no mount of %s at %s: %+v", gc.Name, webhook.VolumeName, webhook.MountPath, gc.VolumeMounts))
		}
		if e := env(gc, webhook.EnvName); e == nil || e.Value == "" {
			errs = append(errs, fmt.Errorf("container %s: no env %s: %+v", gc.Name, webhook.EnvName, gc.Env))
		}
		if len(gc.Env) < len(sc.Env) || !equality.Semantic.DeepEqual(gc.Env[:len(sc.Env)], sc.Env) {
			errs = append(errs, fmt.Errorf("container %s: env %+v does not start with the submitted %+v", gc.Name, gc.Env, sc.Env))
		}
		if len(gc.VolumeMounts) < len(sc.VolumeMounts) || !equality.Semantic.DeepEqual(gc.VolumeMounts[:len(sc.VolumeMounts)], sc.VolumeMounts) {
			errs = append(errs, fmt.Errorf("container %s: mounts %+v do not start with the submitted %+v", gc.Name, gc.VolumeMounts, sc.VolumeMounts))
		}
	}
	if got.Annotations[webhook.InjectedAnnotation] != "true" {
		errs = append(errs, fmt.Errorf("annotation %s missing: %v", webhook.InjectedAnnotation, got.Annotations))
	}
	for k, v := range submitted.Annotations {
		if got.Annotations[k] != v {
			errs = append(errs, fmt.Errorf("submitted annotation %s=%s lost: %v", k, v, got.Annotations))
		}
	}
	for k, v := range submitted.Labels {
		if got.Labels[k] != v {
			errs = append(errs, fmt.Errorf("submitted label %s=%s changed: %v", k, v, got.Labels))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("pod %s:\n%v", got.Name, err)
	}
}

// checkServiceAccount checks what the ServiceAccount admission plugin
// adds, the proof that the apiserver's default admission chain ran.
func checkServiceAccount(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if p.Spec.ServiceAccountName != "default" {
		t.Errorf("pod %s: serviceAccountName %q, want default", p.Name, p.Spec.ServiceAccountName)
	}
	var token *corev1.Volume
	for i, v := range p.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") {
			token = &p.Spec.Volumes[i]
		}
	}
	if token == nil || token.Projected == nil {
		t.Errorf("pod %s: no projected kube-api-access-* volume in %v", p.Name, volumeNames(p))
		return
	}
	if m := mount(p.Spec.Containers[0], token.Name); m == nil || m.MountPath != saMountPath {
		t.Errorf("pod %s: container %s does not mount %s at %s", p.Name, p.Spec.Containers[0].Name, token.Name, saMountPath)
	}
}

func checkUntouchedTemplate(t *testing.T, what string, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	if len(tmpl.Spec.Containers) != 1 || len(tmpl.Spec.Volumes) != 0 || len(tmpl.Spec.Containers[0].Env) != 0 ||
		tmpl.Spec.ServiceAccountName != "" || tmpl.Annotations[webhook.InjectedAnnotation] != "" || tmpl.Labels[zoneLabel] != "" {
		t.Errorf("%s carries what admission added to its pods: %+v", what, tmpl)
	}
}

func containerNames(p *corev1.Pod) []string {
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

func volumeNames(p *corev1.Pod) []string {
	var names []string
	for _, v := range p.Spec.Volumes {
		names = append(names, v.Name)
	}
	return names
}

func volume(p *corev1.Pod, name string) *corev1.Volume {
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == name {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

func mount(c corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}
