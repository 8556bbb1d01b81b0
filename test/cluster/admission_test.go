package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/test/cluster"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// TestDefaultAdmission: the control plane admits pods as a real cluster
// does. Namespace returns once pods can be created; the ServiceAccount
// plugin gives a pod the default service account and a token volume; and
// the kube-root-ca.crt that volume projects is a CA that verifies the
// apiserver, so a real kubelet's pods could use it.
func TestDefaultAdmission(t *testing.T) {
	c := cluster.Shared(t)
	cs := c.Clientset()
	ctx := context.Background()
	ns := c.Namespace(t)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
	// No retry: Namespace has waited for the default ServiceAccount.
	got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a pod right after Namespace: %v", err)
	}
	if got.Spec.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName %q, want default", got.Spec.ServiceAccountName)
	}
	var token string
	for _, v := range got.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil {
			token = v.Name
		}
	}
	if token == "" {
		t.Errorf("no projected kube-api-access-* volume: %+v", got.Spec.Volumes)
	}

	var pool *x509.CertPool
	cluster.Eventually(t, time.Minute, "kube-root-ca.crt published", func() error {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"])) {
			return fmt.Errorf("ca.crt holds no certificate: %q", cm.Data["ca.crt"])
		}
		return nil
	})
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(c.Server + "/readyz")
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		t.Fatalf("kube-root-ca.crt does not verify the apiserver: %v", err)
	}
	if err != nil {
		t.Fatalf("reaching the apiserver with kube-root-ca.crt as the only CA: %v", err)
	}
	resp.Body.Close()
}
