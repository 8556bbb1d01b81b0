package ingest

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"rollbook.dev/rollbook/journal"
)

// Compact turns a served object into its compact record. It copies fields
// in by name, so what is not named here (env values, volumes, secrets,
// commands, arbitrary annotations) can never reach the journal.
func Compact(r Resource, u *unstructured.Unstructured) (journal.Observed, error) {
	sum, err := objectHash(u.Object)
	if err != nil {
		return journal.Observed{}, fmt.Errorf("ingest: encoding %s %s/%s: %w", r.Name(), u.GetNamespace(), u.GetName(), err)
	}
	o := observedMeta(r.Name(), u, sum)
	switch r.Name() {
	case "pods":
		var p corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			return o, fmt.Errorf("ingest: pod %s/%s: %w", o.Namespace, o.Name, err)
		}
		compactPod(&o, &p)
	case "controllerrevisions.apps":
		rev, err := revisionFacts(u)
		if err != nil {
			return o, fmt.Errorf("ingest: controllerrevision %s/%s: %w", o.Namespace, o.Name, err)
		}
		o.Revision = rev
	case "statefulsets.apps":
		var s appsv1.StatefulSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
			return o, fmt.Errorf("ingest: statefulset %s/%s: %w", o.Namespace, o.Name, err)
		}
		o.Workload = statefulSetFacts(&s)
	case "daemonsets.apps":
		var d appsv1.DaemonSet
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
			return o, fmt.Errorf("ingest: daemonset %s/%s: %w", o.Namespace, o.Name, err)
		}
		o.Workload = daemonSetFacts(&d)
	case "nodes":
		var n corev1.Node
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n); err != nil {
			return o, fmt.Errorf("ingest: node %s: %w", o.Name, err)
		}
		o.Node = nodeFacts(&n)
		o.Labels = nil // held once, in NodeFacts
	case "inplacerollouts.rollbook.dev":
		// The rollout is ours and small: keep spec and status whole, as JSON.
		if spec, ok := u.Object["spec"]; ok {
			if o.Spec, err = json.Marshal(spec); err != nil {
				return o, fmt.Errorf("ingest: rollout spec: %w", err)
			}
		}
		if st, ok := u.Object["status"]; ok {
			if o.Status, err = json.Marshal(st); err != nil {
				return o, fmt.Errorf("ingest: rollout status: %w", err)
			}
		}
	}
	return o, nil
}

// observedMeta is what every record holds of an object: its identity,
// labels, kept annotations, times and controller, and its hash.
func observedMeta(resource string, m metav1.Object, sum [32]byte) journal.Observed {
	o := journal.Observed{
		Resource:        resource,
		Namespace:       m.GetNamespace(),
		Name:            m.GetName(),
		UID:             string(m.GetUID()),
		ResourceVersion: m.GetResourceVersion(),
		Generation:      m.GetGeneration(),
		Labels:          m.GetLabels(),
		Annotations:     keptAnnotations(m.GetAnnotations()),
		HasAnnotations:  len(m.GetAnnotations()) > 0,
		Created:         m.GetCreationTimestamp().UnixNano(),
		ObjectHash:      sum[:],
	}
	if ts := m.GetDeletionTimestamp(); ts != nil {
		o.Deleting = ts.UnixNano()
	}
	for _, ref := range m.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller {
			o.Owner = &journal.OwnerRef{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: string(ref.UID)}
		}
	}
	return o
}

// compactPod adds what o's record holds of pod p.
func compactPod(o *journal.Observed, p *corev1.Pod) {
	o.Pod = podFacts(p)
	o.AnnotationKeys = foreignAnnotationKeys(p.Annotations)
}

// keptAnnotations keeps only Rollbook's own annotations: others may hold
// anything, including credentials (kubectl's last-applied-configuration
// holds the whole object).
func keptAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for k, v := range in {
		if strings.HasPrefix(k, "rollbook.dev/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func podFacts(p *corev1.Pod) *journal.PodFacts {
	f := &journal.PodFacts{
		NodeName: p.Spec.NodeName,
		Phase:    string(p.Status.Phase),
		PodIP:    p.Status.PodIP,
		QOSClass: string(p.Status.QOSClass),
	}
	for _, g := range p.Spec.ReadinessGates {
		f.ReadinessGates = append(f.ReadinessGates, string(g.ConditionType))
	}
	for _, c := range p.Status.Conditions {
		f.Conditions = append(f.Conditions, journal.Condition{
			Type: string(c.Type), Status: string(c.Status), Reason: c.Reason, Message: c.Message,
			LastTransition: c.LastTransitionTime.UnixNano(),
		})
	}
	f.Containers = containers(p.Spec.Containers, p.Status.ContainerStatuses)
	f.InitContainers = containers(p.Spec.InitContainers, p.Status.InitContainerStatuses)
	f.EnvFieldRefs = envFieldRefs(p.Spec.Containers, p.Spec.InitContainers)
	return f
}

func containers(spec []corev1.Container, statuses []corev1.ContainerStatus) []journal.Container {
	if len(spec) == 0 {
		return nil
	}
	byName := make(map[string]*corev1.ContainerStatus, len(statuses))
	for i := range statuses {
		byName[statuses[i].Name] = &statuses[i]
	}
	out := make([]journal.Container, 0, len(spec))
	for i := range spec {
		c := containerSpec(&spec[i])
		if s := byName[spec[i].Name]; s != nil {
			c.ImageID = s.ImageID
			c.ContainerID = s.ContainerID
			c.RestartCount = s.RestartCount
			c.Ready = s.Ready
			c.Started = s.Started != nil && *s.Started
			c.StatusImage = s.Image
			c.State = stateString(s.State)
			if s.Resources != nil {
				c.ActualRequests = quantities(s.Resources.Requests)
				c.ActualLimits = quantities(s.Resources.Limits)
			}
		}
		out = append(out, c)
	}
	return out
}

// containerSpec keeps a container's name, image and resources.
func containerSpec(c *corev1.Container) journal.Container {
	return journal.Container{
		Name:          c.Name,
		Image:         c.Image,
		Requests:      quantities(c.Resources.Requests),
		Limits:        quantities(c.Resources.Limits),
		RestartAlways: c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways,
	}
}

// envFieldRefs lists the label and annotation paths that env vars read
// through fieldRef. The kubelet does not restart a container when those
// change, so a change to them cannot be applied in place.
func envFieldRefs(lists ...[]corev1.Container) []string {
	seen := map[string]bool{}
	for _, cs := range lists {
		for _, c := range cs {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					p := e.ValueFrom.FieldRef.FieldPath
					if strings.HasPrefix(p, "metadata.labels") || strings.HasPrefix(p, "metadata.annotations") {
						seen[p] = true
					}
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func stateString(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting:" + s.Waiting.Reason
	case s.Terminated != nil:
		return "terminated:" + s.Terminated.Reason
	}
	return ""
}

func quantities(l corev1.ResourceList) map[string]string {
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[string(k)] = v.String()
	}
	return out
}

func statefulSetFacts(s *appsv1.StatefulSet) *journal.WorkloadFacts {
	w := &journal.WorkloadFacts{
		Kind:               "StatefulSet",
		UpdateStrategy:     string(s.Spec.UpdateStrategy.Type),
		UpdateRevision:     s.Status.UpdateRevision,
		CurrentRevision:    s.Status.CurrentRevision,
		ObservedGeneration: s.Status.ObservedGeneration,
		UpdatedReplicas:    s.Status.UpdatedReplicas,
		ReadyReplicas:      s.Status.ReadyReplicas,
	}
	if s.Spec.Replicas != nil {
		w.Replicas = *s.Spec.Replicas
	}
	if s.Spec.Selector != nil {
		w.Selector = s.Spec.Selector.MatchLabels
	}
	return w
}

func daemonSetFacts(d *appsv1.DaemonSet) *journal.WorkloadFacts {
	w := &journal.WorkloadFacts{
		Kind:               "DaemonSet",
		UpdateStrategy:     string(d.Spec.UpdateStrategy.Type),
		Replicas:           d.Status.DesiredNumberScheduled,
		ObservedGeneration: d.Status.ObservedGeneration,
		UpdatedReplicas:    d.Status.UpdatedNumberScheduled,
		ReadyReplicas:      d.Status.NumberReady,
	}
	// apps/v1 keeps the template generation in this annotation; the
	// DaemonSet controller compares pods' pod-template-generation to it.
	if g, err := strconv.ParseInt(d.Annotations["deprecated.daemonset.template.generation"], 10, 64); err == nil {
		w.TemplateGeneration = g
	}
	if d.Spec.Selector != nil {
		w.Selector = d.Spec.Selector.MatchLabels
	}
	w.Template = TemplateFacts(&d.Spec.Template)
	return w
}

func nodeFacts(n *corev1.Node) *journal.NodeFacts {
	f := &journal.NodeFacts{Unschedulable: n.Spec.Unschedulable}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			f.Ready = c.Status == corev1.ConditionTrue
		}
	}
	if len(n.Labels) > 0 {
		f.Labels = maps.Clone(n.Labels)
	}
	return f
}

// topologyOnly keeps the labels scatter is most often given when a node's
// record must shrink: topology.kubernetes.io/* and kubernetes.io/hostname.
func topologyOnly(labels map[string]string) map[string]string {
	var out map[string]string
	for k, v := range labels {
		if strings.HasPrefix(k, "topology.kubernetes.io/") || k == "kubernetes.io/hostname" {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// truncate keeps what identifies an object and its state and drops the
// maps and lists that can grow without bound, saying so in Truncated.
// Pod facts are trimmed of conditions' messages; a workload's template and
// a revision's are dropped (the planner holds such a rollout, waiting for
// a template it can read).
func truncate(o journal.Observed, why error) *journal.Observed {
	t := o
	t.Labels, t.Annotations, t.AnnotationKeys, t.Spec, t.Status = nil, nil, nil, nil, nil
	if t.Pod != nil {
		p := *t.Pod
		p.Conditions = append([]journal.Condition(nil), p.Conditions...)
		for i := range p.Conditions {
			p.Conditions[i].Message = ""
		}
		p.EnvFieldRefs = nil
		t.Pod = &p
	}
	if t.Workload != nil {
		w := *t.Workload
		w.Template, w.Selector = nil, nil
		t.Workload = &w
	}
	if t.Revision != nil {
		t.Revision = &journal.RevisionFacts{Revision: t.Revision.Revision}
	}
	if t.Node != nil {
		n := *t.Node
		n.Labels = topologyOnly(n.Labels)
		t.Node = &n
	}
	t.Truncated = "labels (a node's but its topology), annotations, spec, status, templates and messages dropped: " + why.Error()
	return &t
}
