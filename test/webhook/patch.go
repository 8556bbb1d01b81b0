package webhook

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// What the injector adds to a pod, as a service-mesh injector would.
const (
	// SidecarName is the container appended to spec.containers.
	SidecarName = "mesh-proxy"
	// DefaultSidecarImage is the sidecar's image unless Options say otherwise.
	DefaultSidecarImage = "registry.example/mesh-proxy:1.0"
	// VolumeName is the emptyDir volume added to the pod and mounted, at
	// MountPath, in every container.
	VolumeName = "mesh-certs"
	MountPath  = "/etc/mesh/certs"
	// EnvName is the env var added to every container; its value is the
	// admission request's UID, unique per pod.
	EnvName = "MESH_POD_ID"
	// InjectedAnnotation is set to "true" on every injected pod. A pod
	// that already carries it is left alone, so a reinvoked or second
	// injector never adds a second sidecar.
	InjectedAnnotation = "mesh.example/injected"
)

// op is one RFC 6902 operation. Only "add" is used: on an object member
// it creates or replaces, on an array index "-" it appends.
type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// podPatch is the JSON patch that injects pod, or nil when it is already
// injected. Existing containers are patched before the sidecar is
// appended, so every index in the patch refers to the pod as submitted.
// labels are added only where the pod does not carry the key: they stand
// for what admission sets that no template had (a zone copied from a
// node), not for overriding what the user wrote.
func podPatch(pod *corev1.Pod, image string, labels map[string]string, podID string) []op {
	if pod.Annotations[InjectedAnnotation] == "true" {
		return nil
	}
	mount := corev1.VolumeMount{Name: VolumeName, MountPath: MountPath, ReadOnly: true}
	env := corev1.EnvVar{Name: EnvName, Value: podID}
	var ops []op
	for i, c := range pod.Spec.Containers {
		base := "/spec/containers/" + strconv.Itoa(i)
		ops = append(ops, appendTo(base+"/volumeMounts", len(c.VolumeMounts), mount))
		ops = append(ops, appendTo(base+"/env", len(c.Env), env))
	}
	ops = append(ops, appendTo("/spec/volumes", len(pod.Spec.Volumes),
		corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}))
	ops = append(ops, op{Op: "add", Path: "/spec/containers/-", Value: sidecar(image, mount, env)})
	ops = append(ops, putEntries("/metadata/annotations", pod.Annotations, map[string]string{InjectedAnnotation: "true"})...)
	ops = append(ops, putEntries("/metadata/labels", pod.Labels, labels)...)
	return ops
}

// appendTo appends v to the array at path, which has n elements. An empty
// array may be absent from the submitted JSON, and "-" cannot append to
// what does not exist: then the whole array is added.
func appendTo(path string, n int, v any) op {
	if n == 0 {
		return op{Op: "add", Path: path, Value: []any{v}}
	}
	return op{Op: "add", Path: path + "/-", Value: v}
}

// putEntries adds the entries of add whose keys are missing from have, one
// operation per key in key order (a deterministic patch); when have is
// empty, and so may be absent from the JSON, the map is added whole.
func putEntries(path string, have, add map[string]string) []op {
	missing := map[string]string{}
	for k, v := range add {
		if _, ok := have[k]; !ok {
			missing[k] = v
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(have) == 0 {
		return []op{{Op: "add", Path: path, Value: missing}}
	}
	keys := make([]string, 0, len(missing))
	for k := range missing {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ops := make([]op, 0, len(keys))
	for _, k := range keys {
		ops = append(ops, op{Op: "add", Path: path + "/" + escape(k), Value: missing[k]})
	}
	return ops
}

// escape makes a map key one JSON-pointer token (RFC 6901): label keys
// such as topology.kubernetes.io/zone hold a "/".
func escape(key string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

// sidecar is the injected proxy container. It mounts the mesh volume and
// sees the env var like the pod's own containers, and requests a little
// CPU and memory as real proxies do (so resource sums differ from the
// template's too).
func sidecar(image string, mount corev1.VolumeMount, env corev1.EnvVar) corev1.Container {
	return corev1.Container{
		Name:            SidecarName,
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Ports:           []corev1.ContainerPort{{Name: "mesh-admin", ContainerPort: 15000}},
		Env:             []corev1.EnvVar{env},
		VolumeMounts:    []corev1.VolumeMount{mount},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		}},
	}
}
