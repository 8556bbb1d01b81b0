// Package webhook is a mutating admission webhook for the test ground, so
// that tests see pods as a real cluster stores them: changed by admission
// in ways their template never described.
//
// Like a service-mesh injector, it adds to every pod created in a
// namespace it is enabled for:
//
//   - a sidecar container, mesh-proxy (SidecarName), appended last;
//   - an emptyDir volume, mesh-certs (VolumeName), mounted read-only in
//     every container the pod was submitted with;
//   - an env var, MESH_POD_ID (EnvName), in every such container;
//   - the annotation mesh.example/injected: "true" (InjectedAnnotation);
//   - optionally fixed labels (Options.PodLabels), for "admission added a
//     label the template never had", such as a zone.
//
// It runs in the test process as an HTTPS server on 127.0.0.1 with a CA
// and certificate made for it, registered by a MutatingWebhookConfiguration
// (pods, CREATE only, failurePolicy Fail). The apiserver's own admission
// chain runs before it: the ServiceAccount plugin's
// serviceAccountName: default and kube-api-access-* volume are already in
// the pod it receives.
//
//	func TestX(t *testing.T) {
//		c := cluster.Shared(t)
//		inj := webhook.Install(t, c, webhook.Options{  // stopped and unregistered when t ends
//			PodLabels: map[string]string{"topology.kubernetes.io/zone": "zone-a"},
//		})
//		ns := inj.Namespace(t, c)                      // c.Namespace(t), enabled: its pods are injected
//		// ... create a StatefulSet in ns; its pods carry the sidecar, its template does not.
//	}
//
// Outside a test (or once for a whole package, from cluster.MainWith):
// Start, Enable(ctx, ns) per namespace, Stop. A namespace is enabled by
// the label NamespaceLabel set to the injector's Name, so injectors never
// overlap.
package webhook
