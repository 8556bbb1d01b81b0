package main

// The sidecar check of the demo and the end-to-end tests: an in-place
// update must leave every container it does not update running (same
// containerID, same restartCount), at the apiserver and in every record
// the journal holds.

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/journal"
)

// containerIdentity is what the kubelet changes only when it creates a
// container anew. An in-place update must leave both alone on every
// container it does not update: that is what keeps a sidecar running.
type containerIdentity struct {
	ID       string
	Restarts int32
}

// podContainers is one pod's UID and its containers' identities by name,
// init containers included (a native sidecar is one).
type podContainers struct {
	UID        string
	Containers map[string]containerIdentity
}

func containersOf(p *corev1.Pod) podContainers {
	pc := podContainers{UID: string(p.UID), Containers: map[string]containerIdentity{}}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range list {
			pc.Containers[s.Name] = containerIdentity{ID: s.ContainerID, Restarts: s.RestartCount}
		}
	}
	return pc
}

// listContainers reads every pod of ns from the apiserver, by pod name.
func listContainers(ctx context.Context, cs kubernetes.Interface, ns string) (map[string]podContainers, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]podContainers, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Name] = containersOf(&list.Items[i])
	}
	return out, nil
}

// containerChanges says, by pod name, what changed in containers that
// should have been kept.
type containerChanges map[string][]string

func (c containerChanges) add(pod, format string, a ...any) {
	c[pod] = append(c[pod], fmt.Sprintf(format, a...))
}

// lines are the changes as "pod: what", sorted by pod.
func (c containerChanges) lines() []string {
	var out []string
	for _, pod := range sortedKeys(c) {
		for _, what := range c[pod] {
			out = append(out, pod+": "+what)
		}
	}
	return out
}

// keptContainers compares each pod of before with the pod of that name in
// after. A pod kept its containers when it is the same pod (a recreated
// pod restarted everything) and every container not named in updated has
// the same containerID and restartCount.
func keptContainers(before, after map[string]podContainers, updated ...string) containerChanges {
	changes := containerChanges{}
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			changes.add(name, "gone")
			continue
		case a.UID != b.UID:
			changes.add(name, "recreated (uid %s → %s)", b.UID, a.UID)
			continue
		}
		for _, c := range sortedKeys(b.Containers) {
			if was, is := b.Containers[c], a.Containers[c]; was != is && !slices.Contains(updated, c) {
				changes.add(name, "container %s %s → %s", c, was, is)
			}
		}
	}
	return changes
}

func (c containerIdentity) String() string {
	id := c.ID
	if id == "" {
		id = "no container"
	}
	return fmt.Sprintf("%s (restarts %d)", id, c.Restarts)
}

// journaledContainerChanges adds to changes what every Observed record of
// the pods of before (same namespace, name and UID) shows: a container not
// named in updated with a containerID or restartCount other than before's,
// once per identity. A container renamed and renamed back between two
// looks at the apiserver is as wrong as one renamed for good. Statuses
// without a containerID (the pod not started yet) are skipped.
func journaledContainerChanges(ctx context.Context, j *journal.Journal, ns string, before map[string]podContainers, changes containerChanges, updated ...string) error {
	type seen struct {
		pod, container string
		id             containerIdentity
	}
	reported := map[seen]bool{}
	return j.Read(ctx, 1, func(r journal.Record) error {
		if r.Kind != journal.KindObserved {
			return nil
		}
		var o journal.Observed
		if err := r.Decode(&o); err != nil {
			return fmt.Errorf("record %d: %w", r.Seq, err)
		}
		b, ok := before[o.Name]
		if o.Resource != "pods" || o.Namespace != ns || o.Pod == nil || !ok || o.UID != b.UID {
			return nil
		}
		for _, list := range [][]journal.Container{o.Pod.InitContainers, o.Pod.Containers} {
			for _, c := range list {
				was, known := b.Containers[c.Name]
				is := containerIdentity{ID: c.ContainerID, Restarts: c.RestartCount}
				k := seen{o.Name, c.Name, is}
				if !known || is.ID == "" || is == was || reported[k] || slices.Contains(updated, c.Name) {
					continue
				}
				reported[k] = true
				changes.add(o.Name, "container %s %s → %s (journal record %d, resourceVersion %s)", c.Name, was, is, r.Seq, o.ResourceVersion)
			}
		}
		return nil
	})
}
