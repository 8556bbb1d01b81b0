// Package cluster builds and runs a real Kubernetes control plane on
// loopback for tests: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler v1.37.2, built once from the module proxy by the nested
// module test/k8s into the user's cache.
//
//	func TestMain(m *testing.M) { cluster.Main(m) } // one control plane per package
//
//	func TestX(t *testing.T) {
//		c := cluster.Shared(t)
//		ns := c.Namespace(t)                      // default ServiceAccount ready; deleted after; log tails on failure
//		cfg, _ := c.ServiceAccountConfig(ctx, ns, "rollbook") // RBAC applies
//		cluster.Eventually(t, time.Minute, "pods ready", func() error { ... })
//	}
//
// Every wait has a deadline, and every failure names the component with
// the tail of its log.
package cluster
