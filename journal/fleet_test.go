package journal_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// fleetBooks folds the books of a fleet of that many pods, StatefulSets
// of 1,000 in the middle of one rollout each, as the controller holds them:
// every object is journaled the way ingest compacts it and folded by
// projections. A pod is shaped like those of the 10,000-pod rollout of
// 2026-12-04 (BENCHMARKS §3): five labels, a state annotation, two
// containers, six conditions; its share of the checkpoint is about the
// same (1.9 KB there: 19.7 MB at 10,000 pods).
func fleetBooks(tb testing.TB, pods int) *projections.Books {
	tb.Helper()
	books := projections.NewBooks()
	at := time.Unix(1_796_408_245, 0)
	var seq uint64
	fold := func(kind journal.Kind, key string, body any) {
		tb.Helper()
		b, err := journal.EncodeBody(body)
		if err != nil {
			tb.Fatal(err)
		}
		seq++
		at = at.Add(time.Millisecond)
		if err := books.Apply(journal.Record{Seq: seq, Time: at, Kind: kind, Key: key, Body: b}); err != nil {
			tb.Fatal(err)
		}
	}
	const ns = "bench"
	uid := func(kind string, i int) string {
		return fmt.Sprintf("%08x-%s-4bcd-%04x-%012x", i*7919, kind, i%65536, i)
	}
	digest := func(s string) string { h := sha256.Sum256([]byte(s)); return fmt.Sprintf("%x", h) }
	nodes := max(pods/100, 1)
	for n := range nodes {
		name := fmt.Sprintf("kwok-node-%04d", n)
		fold(journal.KindObserved, "nodes/"+name, journal.Observed{
			Resource: "nodes", Name: name, UID: uid("node", n), ResourceVersion: fmt.Sprint(1000 + n), Created: at.UnixNano(),
			ObjectHash: []byte(digest(name))[:32], HasAnnotations: true,
			Node: &journal.NodeFacts{Ready: true, Labels: map[string]string{
				"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": zone(n), "type": "kwok",
			}},
		})
	}
	sets := max(pods/1000, 1)
	for s := range sets {
		set := fmt.Sprintf("web-%02d", s)
		owner := &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: set, UID: uid("sts", s)}
		oldRev, newRev := set+"-5f7b959f4c", set+"-6f7b485776"
		fold(journal.KindObserved, "statefulsets.apps/"+ns+"/"+set, journal.Observed{
			Resource: "statefulsets.apps", Namespace: ns, Name: set, UID: owner.UID, ResourceVersion: fmt.Sprint(2000 + s), Generation: 2,
			Created: at.UnixNano(), ObjectHash: []byte(digest(set))[:32],
			Workload: &journal.WorkloadFacts{Kind: "StatefulSet", UpdateStrategy: "OnDelete", Replicas: 1000, UpdateRevision: newRev,
				CurrentRevision: oldRev, Selector: map[string]string{"app": set}, ObservedGeneration: 2, UpdatedReplicas: 500, ReadyReplicas: 990},
		})
		for i, rev := range []string{oldRev, newRev} {
			fold(journal.KindObserved, "controllerrevisions.apps/"+ns+"/"+rev, journal.Observed{
				Resource: "controllerrevisions.apps", Namespace: ns, Name: rev, UID: uid("rev", 2*s+i), ResourceVersion: fmt.Sprint(3000 + 2*s + i),
				Labels: map[string]string{"app": set, "controller.kubernetes.io/hash": rev[len(set)+1:]}, Owner: owner,
				Created: at.UnixNano(), ObjectHash: []byte(digest(rev))[:32],
				Revision: &journal.RevisionFacts{Revision: int64(i + 1), Template: &journal.TemplateFacts{
					Labels: map[string]string{"app": set},
					Containers: []journal.TemplateContainer{
						{Name: "app", Image: fmt.Sprintf("registry.example/app:v%d", i+1), Fields: templateFields()},
						{Name: "log", Image: "registry.example/log:v1", Fields: templateFields()},
					},
				}},
			})
		}
		spec, err := json.Marshal(map[string]any{
			"target":   map[string]any{"workloadRef": map[string]string{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": set}},
			"strategy": map[string]any{"maxUnavailable": "10%", "scatter": []map[string]string{{"key": "topology.kubernetes.io/zone"}}},
		})
		if err != nil {
			tb.Fatal(err)
		}
		name := set + "-v2"
		fold(journal.KindObserved, "inplacerollouts.rollbook.dev/"+ns+"/"+name, journal.Observed{
			Resource: "inplacerollouts.rollbook.dev", Namespace: ns, Name: name, UID: uid("ipr", s), ResourceVersion: fmt.Sprint(4000 + s),
			Generation: 1, Created: at.UnixNano(), ObjectHash: []byte(digest(name))[:32], Spec: spec,
		})
	}
	for i := range pods {
		set := fmt.Sprintf("web-%02d", i/1000%sets)
		name := fmt.Sprintf("%s-%d", set, i%1000)
		node := i % nodes
		// Half the fleet is updated; every pod carries a state
		// annotation, as 97 % did in that run (a pod keeps it after its
		// update).
		image, rev := "registry.example/app:v1", set+"-5f7b959f4c"
		if i%2 == 0 {
			image, rev = "registry.example/app:v2", set+"-6f7b485776"
		}
		ann := map[string]string{}
		{
			st, err := json.Marshal(projections.NewPodState(ns+"/"+set+"-v2", "bb698f8fd1", set+"-5f7b959f4c", at.UnixNano(),
				[]projections.ContainerBefore{{Name: "app", Image: "registry.example/app:v1", ImageID: "registry.example/app@sha256:" + digest("v1"),
					ContainerID: projections.ParseContainerID("lean://" + digest(name+"/old"))}}))
			if err != nil {
				tb.Fatal(err)
			}
			ann[projections.StateAnnotation] = string(st)
		}
		t0 := at.Add(-10 * time.Minute).UnixNano()
		fold(journal.KindObserved, "pods/"+ns+"/"+name, journal.Observed{
			Resource: "pods", Namespace: ns, Name: name, UID: uid("pod", i), ResourceVersion: fmt.Sprint(100000 + i), Generation: 2,
			Labels: map[string]string{"app": set, "apps.kubernetes.io/pod-index": fmt.Sprint(i % 1000), "controller-revision-hash": rev,
				"statefulset.kubernetes.io/pod-name": name, "topology.kubernetes.io/zone": zone(node)},
			Annotations: ann, HasAnnotations: true,
			Owner:   &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: set, UID: uid("sts", i/1000%sets)},
			Created: t0, ObjectHash: []byte(digest(name))[:32],
			Pod: &journal.PodFacts{NodeName: fmt.Sprintf("kwok-node-%04d", node), Phase: "Running", PodIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
				ReadinessGates: []string{"rollbook.dev/InPlaceUpdateReady"},
				Conditions: []journal.Condition{
					{Type: "PodReadyToStartContainers", Status: "True", LastTransition: t0},
					{Type: "Initialized", Status: "True", LastTransition: t0},
					{Type: "ContainersReady", Status: "True", LastTransition: t0},
					{Type: "Ready", Status: "True", LastTransition: t0},
					{Type: "rollbook.dev/InPlaceUpdateReady", Status: "True", Reason: "InPlaceUpdateReady", Message: "revision bb698f8fd1 verified", LastTransition: t0},
					{Type: "PodScheduled", Status: "True", LastTransition: t0},
				},
				Containers: []journal.Container{
					{Name: "app", Image: image, ImageID: "registry.example/app@sha256:" + digest(image), ContainerID: "lean://" + digest(name+"/app"),
						Ready: true, Started: true, State: "running", StatusImage: image},
					{Name: "log", Image: "registry.example/log:v1", ImageID: "registry.example/log@sha256:" + digest("log"), ContainerID: "lean://" + digest(name+"/log"),
						Ready: true, Started: true, State: "running", StatusImage: "registry.example/log:v1"},
				},
				QOSClass: "BestEffort",
			},
		})
	}
	// The actions in flight: one pod in a hundred has an intent open.
	for i := 0; i < pods; i += 100 {
		set := fmt.Sprintf("web-%02d", i/1000%sets)
		pod := fmt.Sprintf("%s/%s-%d", ns, set, i%1000)
		f := journal.ActionFact{Key: fmt.Sprintf("gate/%s/%s/bb698f8fd1", pod, uid("pod", i)), Kind: "gate", Rollout: ns + "/" + set + "-v2",
			Pod: pod, UID: uid("pod", i), Revision: "bb698f8fd1", PlanSeq: seq}
		fold(journal.KindActionIntended, f.Key, f)
	}
	fold(journal.KindTick, "tick", journal.TickFact{Reason: "plan"})
	if len(books.State.Pods) != pods {
		tb.Fatalf("folded %d pods of %d", len(books.State.Pods), pods)
	}
	return books
}

func zone(i int) string { return "zone-" + string(rune('a'+i%3)) }

func templateFields() map[string][]byte {
	return map[string][]byte{
		"imagePullPolicy": []byte("kiFWyEBL"), "terminationMessagePath": []byte("VeoUTXyx"), "terminationMessagePolicy": []byte("9XpUff7T"),
	}
}
