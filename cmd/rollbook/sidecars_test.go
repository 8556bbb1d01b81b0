package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// checkContainersKept fails t unless every pod of before is still the same
// pod and every container not named in updated kept its containerID and
// restartCount: at the end, as the apiserver has it, and in every status
// the running controller r journaled on the way (the demo's check). An
// in-place update restarts the containers it changes and no other.
func checkContainersKept(t *testing.T, c *cluster.Cluster, r *running, ns string, before map[string]corev1.Pod, updated ...string) {
	t.Helper()
	ctx := context.Background()
	b := make(map[string]podContainers, len(before))
	for name, p := range before {
		b[name] = containersOf(&p)
	}
	after, err := listContainers(ctx, c.Clientset(), ns)
	if err != nil {
		t.Fatal(err)
	}
	changes := keptContainers(b, after, updated...)
	if err := journaledContainerChanges(ctx, r.c.j, ns, b, changes, updated...); err != nil {
		t.Fatalf("reading the journal: %v", err)
	}
	if len(changes) > 0 {
		lines := changes.lines()
		t.Fatalf("%d of %d pods did not keep their containers other than %v, e.g.:\n%s",
			len(changes), len(b), updated, strings.Join(lines[:min(len(lines), 10)], "\n"))
	}
}

// TestKeptContainers: the check itself, on made-up pods: a renamed or
// restarted container not being updated is caught, by the apiserver's
// final state or by one journaled status; an updated one is not; a
// recreated pod never counts as kept.
func TestKeptContainers(t *testing.T) {
	id := func(s string, n int32) containerIdentity { return containerIdentity{ID: "kwok://" + s, Restarts: n} }
	pod := func(uid string, app, log containerIdentity) podContainers {
		return podContainers{UID: uid, Containers: map[string]containerIdentity{"app": app, "log": log}}
	}
	before := map[string]podContainers{
		"web-0": pod("u0", id("a0", 0), id("l0", 0)),
		"web-1": pod("u1", id("a1", 0), id("l1", 0)),
		"web-2": pod("u2", id("a2", 0), id("l2", 0)),
		"web-3": pod("u3", id("a3", 0), id("l3", 0)),
	}
	after := map[string]podContainers{
		"web-0": pod("u0", id("a0b", 1), id("l0", 0)),  // app updated: kept
		"web-1": pod("u1", id("a1b", 1), id("l1b", 0)), // renamed sidecar
		"web-2": pod("u2", id("a2b", 1), id("l2", 1)),  // restarted sidecar
		"web-3": pod("u3x", id("a3", 0), id("l3", 0)),  // recreated
	}
	got := keptContainers(before, after, "app")
	if len(got) != 3 || got["web-0"] != nil || got["web-1"] == nil || got["web-2"] == nil || got["web-3"] == nil {
		t.Fatalf("changes %v, want web-1, web-2 and web-3", got)
	}
	if all := keptContainers(before, before); len(all) != 0 {
		t.Fatalf("unchanged pods reported: %v", all)
	}
	if l := strings.Join(got.lines(), "\n"); !strings.Contains(l, "web-1: container log kwok://l1 (restarts 0) → kwok://l1b (restarts 0)") {
		t.Fatalf("lines do not say what changed:\n%s", l)
	}

	// The journal: web-0's sidecar renamed and renamed back, which the
	// apiserver's final state cannot show.
	j, err := journal.Open(t.TempDir(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	observe := func(name, uid string, cs ...journal.Container) journal.Entry {
		body, err := journal.EncodeBody(journal.Observed{Resource: "pods", Namespace: "ns", Name: name, UID: uid, Pod: &journal.PodFacts{Containers: cs}})
		if err != nil {
			t.Fatal(err)
		}
		return journal.Entry{Kind: journal.KindObserved, Key: "pods/ns/" + name, Body: body}
	}
	ctr := func(name, id string, n int32) journal.Container {
		return journal.Container{Name: name, ContainerID: id, RestartCount: n}
	}
	if _, err := j.Append(context.Background(), nil,
		observe("web-0", "u0", ctr("app", "", 0), ctr("log", "", 0)), // not started: skipped
		observe("web-0", "u0", ctr("app", "kwok://a0", 0), ctr("log", "kwok://l0", 0)),
		observe("web-0", "u0", ctr("app", "kwok://a0", 0), ctr("log", "kwok://l0x", 0)),
		observe("web-0", "u0", ctr("app", "kwok://a0b", 1), ctr("log", "kwok://l0", 0)),
		observe("web-1", "u1", ctr("app", "kwok://a1b", 1), ctr("log", "kwok://l1", 0)),
		observe("web-2", "other", ctr("app", "kwok://z", 0), ctr("log", "kwok://z", 0)), // another pod of that name
	); err != nil {
		t.Fatal(err)
	}
	jc := containerChanges{}
	if err := journaledContainerChanges(context.Background(), j, "ns", before, jc, "app"); err != nil {
		t.Fatal(err)
	}
	if len(jc) != 1 || len(jc["web-0"]) != 1 || !strings.Contains(jc["web-0"][0], "kwok://l0x") {
		t.Fatalf("journal changes %v, want web-0's sidecar renamed once", jc)
	}
}
