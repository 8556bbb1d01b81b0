package ingest

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Resource describes one kind of object ingest lists and watches.
type Resource struct {
	GVR        schema.GroupVersionResource
	Namespaced bool
}

// The resources Rollbook plans from. Any GVR works; these have compact forms.
var (
	Pods         = Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespaced: true}
	Nodes        = Resource{GVR: schema.GroupVersionResource{Version: "v1", Resource: "nodes"}}
	StatefulSets = Resource{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, Namespaced: true}
	DaemonSets   = Resource{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, Namespaced: true}
	// ControllerRevisions hold each StatefulSet and DaemonSet revision's
	// pod template: what changed is decided between two of them.
	ControllerRevisions = Resource{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "controllerrevisions"}, Namespaced: true}
	Rollouts            = Resource{GVR: schema.GroupVersionResource{Group: "rollbook.dev", Version: "v1alpha1", Resource: "inplacerollouts"}, Namespaced: true}
)

// Name is the resource's name as records carry it: "pods",
// "statefulsets.apps", "inplacerollouts.rollbook.dev".
func (r Resource) Name() string {
	if r.GVR.Group == "" {
		return r.GVR.Resource
	}
	return r.GVR.Resource + "." + r.GVR.Group
}

// Key is the record key of one object: "<resource>/<namespace>/<name>", or
// "<resource>/<name>" for cluster-scoped objects.
func Key(resource, namespace, name string) string {
	if namespace == "" {
		return resource + "/" + name
	}
	return resource + "/" + namespace + "/" + name
}

// cursorName names the journaled watch cursor of a resource in one scope
// ("" = cluster-wide).
func cursorName(r Resource, namespace string) string {
	if namespace == "" {
		return "watch/" + r.Name()
	}
	return "watch/" + r.Name() + "/" + namespace
}
