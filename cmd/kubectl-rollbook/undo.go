package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// undoVerb rolls a rollout back in place to the previous revision.
//
// A workloadRef target's revisions are its workload's ControllerRevisions:
// as `kubectl rollout undo` does, the workload's template is set back to
// the previous revision's (the revision's data is a strategic merge patch
// of the template), and Rollbook rolls that in place like any template
// change. A selector target's revisions are its own spec.containers; the
// journal holds every spec the controller saw, so the previous one is put
// back into the rollout.
func undoVerb(ctx context.Context, e *env, args []string) error {
	fs := e.flags(false, true)
	to := fs.Int64("to-revision", 0, "the workload's ControllerRevision number to go back to (default: the one before the current)")
	if err := e.parse(args, 1); err != nil {
		return err
	}
	if err := e.connect(); err != nil {
		return err
	}
	name := fs.Arg(0)
	u, err := e.rollout(ctx, name)
	if err != nil {
		return err
	}
	r, err := decodeRollout(u)
	if err != nil {
		return err
	}
	if ref := r.spec.Target.WorkloadRef; ref != nil {
		return e.undoWorkload(ctx, ref, *to)
	}
	if *to != 0 {
		return fmt.Errorf("--to-revision numbers a workload's ControllerRevisions; %s targets a selector", name)
	}
	return e.undoContainers(ctx, r)
}

func (e *env) undoWorkload(ctx context.Context, ref *projections.WorkloadRef, to int64) error {
	gvr, err := workloadGVR(ref)
	if err != nil {
		return err
	}
	w, err := dynamic.NewForConfigOrDie(e.cfg).Resource(gvr).Namespace(e.ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	list, err := kubernetes.NewForConfigOrDie(e.cfg).AppsV1().ControllerRevisions(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var revs []appsv1.ControllerRevision
	for _, cr := range list.Items {
		if owner := metav1.GetControllerOf(&cr); owner != nil && owner.UID == w.GetUID() {
			revs = append(revs, cr)
		}
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].Revision < revs[j].Revision })
	if len(revs) == 0 {
		return fmt.Errorf("%s %s has no ControllerRevisions", ref.Kind, ref.Name)
	}
	// The current revision: a StatefulSet names it; a DaemonSet's is its
	// newest.
	current := revs[len(revs)-1]
	if ur, _, _ := unstructuredString(w.Object, "status", "updateRevision"); ur != "" {
		for _, cr := range revs {
			if cr.Name == ur {
				current = cr
			}
		}
	}
	var target *appsv1.ControllerRevision
	for i := range revs {
		switch {
		case to != 0 && revs[i].Revision == to:
			target = &revs[i]
		case to == 0 && revs[i].Revision < current.Revision:
			target = &revs[i]
		}
	}
	switch {
	case target == nil && to != 0:
		return fmt.Errorf("%s %s has no revision %d", ref.Kind, ref.Name, to)
	case target == nil:
		return fmt.Errorf("%s %s has no revision before its current one (%s, revision %d)", ref.Kind, ref.Name, current.Name, current.Revision)
	case target.Name == current.Name:
		fmt.Fprintf(e.stdout, "%s/%s skipped rollback (current template already matches revision %d)\n", ref.Kind, ref.Name, target.Revision)
		return nil
	}
	if _, err := dynamic.NewForConfigOrDie(e.cfg).Resource(gvr).Namespace(e.ns).Patch(ctx, ref.Name, types.StrategicMergePatchType, target.Data.Raw, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("setting %s %s's template back to revision %d: %w", ref.Kind, ref.Name, target.Revision, err)
	}
	fmt.Fprintf(e.stdout, "%s/%s rolled back to revision %d (%s); Rollbook rolls it in place\n", ref.Kind, ref.Name, target.Revision, target.Name)
	return nil
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// undoContainers puts back the spec.containers the rollout had before its
// current ones, as the journal recorded them.
func (e *env) undoContainers(ctx context.Context, r rolloutOf) error {
	src, err := e.source()
	if err != nil {
		return fmt.Errorf("a selector rollout's earlier containers are in the journal: %w", err)
	}
	key := ingest.Key(ingest.Rollouts.Name(), r.u.GetNamespace(), r.u.GetName())
	current, err := json.Marshal(r.spec.Containers)
	if err != nil {
		return err
	}
	// The distinct spec.containers of this rollout (this object: its UID),
	// in the order they were seen: its records, from the first.
	var seen []string
	err = src.ReadRolloutRecords(ctx, r.u.GetNamespace()+"/"+r.u.GetName(), func(rec journal.Record) error {
		if rec.Kind != journal.KindObserved || rec.Key != key {
			return nil
		}
		var o journal.Observed
		if err := rec.Decode(&o); err != nil {
			return err
		}
		if o.UID != string(r.u.GetUID()) || len(o.Spec) == 0 {
			return nil
		}
		var spec projections.RolloutSpec
		if json.Unmarshal(o.Spec, &spec) != nil {
			return nil
		}
		b, _ := json.Marshal(spec.Containers)
		if len(seen) == 0 || seen[len(seen)-1] != string(b) {
			seen = append(seen, string(b))
		}
		return nil
	})
	if err != nil {
		return err
	}
	prev := ""
	for i := len(seen) - 1; i >= 0; i-- {
		if seen[i] != string(current) {
			prev = seen[i]
			break
		}
	}
	if prev == "" {
		return fmt.Errorf("%s in %s has no earlier spec.containers than its current ones: nothing to go back to (set them by hand)", r.u.GetName(), src.Describe())
	}
	// The precondition is what the choice rests on: the containers are
	// still those the journal's history was searched from (the
	// controller's status writes may have moved the resourceVersion).
	patch := fmt.Sprintf(`[{"op":"test","path":"/spec/containers","value":%s},{"op":"replace","path":"/spec/containers","value":%s}]`, rawContainers(r), prev)
	if _, err := e.dynamic().Patch(ctx, r.u.GetName(), types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("putting back the containers %s: %w", prev, err)
	}
	fmt.Fprintf(e.stdout, "inplacerollout.rollbook.dev/%s rolled back to its previous containers %s; Rollbook rolls them in place\n", r.u.GetName(), prev)
	return nil
}

// rawContainers is the rollout's spec.containers as the apiserver holds
// them, for a JSON patch test.
func rawContainers(r rolloutOf) string {
	v, _, _ := unstructured.NestedFieldNoCopy(r.u.Object, "spec", "containers")
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}
