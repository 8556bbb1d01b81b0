package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestRecordsHoldNoSecrets: a pod carrying an env value, a secret volume,
// a command line and an annotation with a credential is journaled with
// none of them, while what planning needs is there.
func TestRecordsHoldNoSecrets(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	const secret = "s3cr3t-hunter2"
	p := pod("leaky", map[string]string{"app": "x"})
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"password":"` + secret + `"}`, "rollbook.dev/state": `{"rev":"abc"}`}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", Value: secret}, {Name: "REV", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}}}
	p.Spec.Containers[0].Command = []string{"/bin/app", "--token=" + secret}
	p.Spec.Volumes = []corev1.Volume{{Name: "creds-" + secret[:6], VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db-" + secret}}}}
	if _, err := c.Clientset().CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pl := startPipeline(t, t.TempDir(), readClient(t, c.Config()), ns, ingest.ListAuto, false)
	defer pl.stop(t)
	var o journal.Observed
	cluster.Eventually(t, time.Minute, "pod journaled", func() error {
		err := pl.j.Read(ctx, 1, func(r journal.Record) error {
			if r.Kind == journal.KindObserved && r.Key == ingest.Key("pods", ns, "leaky") {
				if bytes.Contains(r.Body, []byte(secret)) || bytes.Contains(r.Body, []byte(secret[:6])) {
					t.Fatalf("record %d holds the secret: %q", r.Seq, r.Body)
				}
				return r.Decode(&o)
			}
			return nil
		})
		if err == nil && o.UID == "" {
			return errors.New("not yet")
		}
		return err
	})
	if o.Pod == nil || o.UID == "" {
		t.Fatal("pod never journaled")
	}
	if o.Pod.Containers[0].Image != "rollbook.local/app:v1" || len(o.ObjectHash) != 32 {
		t.Fatalf("record lacks what planning and audit need: %+v", o)
	}
	if o.Annotations["rollbook.dev/state"] == "" || len(o.Annotations) != 1 || !o.HasAnnotations {
		t.Fatalf("annotations kept: %v, want only rollbook.dev/*", o.Annotations)
	}
	if len(o.Pod.EnvFieldRefs) != 1 || o.Pod.EnvFieldRefs[0] != "metadata.labels['app']" {
		t.Fatalf("env fieldRefs %v: the planner needs them to refuse stale in-place label changes", o.Pod.EnvFieldRefs)
	}
}
