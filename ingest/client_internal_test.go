package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	restclientwatch "k8s.io/client-go/rest/watch"

	"rollbook.dev/rollbook/journal"
)

// watchPod is a pod as the apiserver sends it on a watch: two containers,
// their statuses, conditions and the managed fields of three writers.
func watchPod(i int) *corev1.Pod {
	at := metav1.NewTime(time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC))
	fields := func(manager string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &at, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}}}}`)}}
	}
	container := func(name, image string) corev1.Container {
		return corev1.Container{Name: name, Image: image, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent}
	}
	status := func(name, image string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Image: image, ImageID: image + "@sha256:0123456789abcdef", Ready: true, Started: new(true),
			ContainerID: fmt.Sprintf("containerd://%064x", i), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}}
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: "shop", UID: "6f1c2a8e-1111-4d2b-9c3e-0123456789ab",
			ResourceVersion: fmt.Sprint(100000 + i), CreationTimestamp: at, Labels: map[string]string{"app": "web", "controller-revision-hash": "web-5d8f7c9b6", "apps.kubernetes.io/pod-index": fmt.Sprint(i)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "0a1b2c3d-2222-4e5f-8a9b-0123456789ab", Controller: new(true), BlockOwnerDeletion: new(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{fields("kube-controller-manager"), fields("kubelet"), fields("rollbook")}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", "registry.example/app:v2"), container("proxy", "registry.example/proxy:v1")},
			NodeName: "node-7", SchedulingGates: []corev1.PodSchedulingGate{}, Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.7.12", HostIP: "192.168.0.7", StartTime: &at, QOSClass: corev1.PodQOSBurstable,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: at}},
			ContainerStatuses: []corev1.ContainerStatus{status("app", "registry.example/app:v2"), status("proxy", "registry.example/proxy:v1")}},
	}
}

func watchFrame(t testing.TB, typ watch.EventType, obj any) string {
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return `{"type":"` + string(typ) + `","object":` + string(raw) + "}\n"
}

// decodeStream reads a watch stream with a serializer's JSON decoders, as
// client-go's rest.Request.Watch puts them together.
func decodeStream(t testing.TB, ns runtime.NegotiatedSerializer, stream []byte) (types []watch.EventType, objs []runtime.Object, err error) {
	var info runtime.SerializerInfo
	for _, in := range ns.SupportedMediaTypes() {
		if in.MediaType == runtime.ContentTypeJSON {
			info = in
		}
	}
	frames := info.StreamSerializer.Framer.NewFrameReader(io.NopCloser(bytes.NewReader(stream)))
	d := restclientwatch.NewDecoder(streaming.NewDecoder(frames, info.StreamSerializer.Serializer), info.Serializer)
	for {
		typ, obj, err := d.Decode()
		if errors.Is(err, io.EOF) {
			return types, objs, nil
		}
		if err != nil {
			return types, objs, err
		}
		types, objs = append(types, typ), append(objs, obj)
	}
}

// TestLeanWatchDecoding: ingest's client decodes every kind of watch frame
// (and frames of other shapes, which it hands to client-go's decoder) into
// the same events and objects as client-go's dynamic client.
func TestLeanWatchDecoding(t *testing.T) {
	std := dynamic.ConfigFor(&rest.Config{}).NegotiatedSerializer
	lean := newLeanSerializer(std)
	pod := watchPod(3)
	podJSON, _ := json.Marshal(pod)
	stream := watchFrame(t, watch.Added, pod) + watchFrame(t, watch.Modified, watchPod(4)) + watchFrame(t, watch.Deleted, pod) +
		watchFrame(t, watch.Bookmark, map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": map[string]any{"resourceVersion": "12345", "annotations": map[string]string{"k8s.io/initial-events-end": "true"}}}) +
		watchFrame(t, watch.Error, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Message: "too old resource version: 1 (5)", Reason: metav1.StatusReasonExpired, Code: 410}) +
		// Not the apiserver's shape: spaced, fields swapped, a field more.
		` { "type" : "MODIFIED", "object" : ` + string(podJSON) + " }\n" +
		`{"object":` + string(podJSON) + `,"type":"ADDED"}` + "\n" +
		`{"type":"ADDED","object":` + string(podJSON) + `,"note":{"a":"}"}}` + "\n"
	wantTypes, wantObjs, err := decodeStream(t, std, []byte(stream))
	if err != nil {
		t.Fatalf("client-go's decoders: %v", err)
	}
	if len(wantTypes) != 8 {
		t.Fatalf("client-go's decoders read %d events, want 8", len(wantTypes))
	}
	gotTypes, gotObjs, err := decodeStream(t, lean, []byte(stream))
	if err != nil {
		t.Fatalf("ingest's decoders: %v", err)
	}
	if !reflect.DeepEqual(gotTypes, wantTypes) {
		t.Fatalf("event types %v, want client-go's %v", gotTypes, wantTypes)
	}
	typed := 0
	for i := range wantObjs {
		if w, ok := gotObjs[i].(*watchedPod); ok {
			// A pod, decoded typed: the pod client-go's map converts to,
			// and the map's hash.
			u, ok := wantObjs[i].(*unstructured.Unstructured)
			if !ok {
				t.Fatalf("event %d: a pod decoded typed where client-go decoded a %T", i, wantObjs[i])
			}
			var want corev1.Pod
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(w.Pod, want) {
				t.Fatalf("event %d (%s): decoded\n%v\nclient-go's, converted\n%v", i, gotTypes[i], w.Pod, want)
			}
			if sum, err := objectHash(u.Object); err != nil || sum != w.sum {
				t.Fatalf("event %d (%s): hash %x, the map's %x (%v)", i, gotTypes[i], w.sum, sum, err)
			}
			typed++
			continue
		}
		if reflect.TypeOf(gotObjs[i]) != reflect.TypeOf(wantObjs[i]) {
			t.Fatalf("event %d: a %T, client-go's a %T", i, gotObjs[i], wantObjs[i])
		}
		if !reflect.DeepEqual(gotObjs[i], wantObjs[i]) {
			t.Fatalf("event %d (%s): decoded\n%v\nclient-go decoded\n%v", i, gotTypes[i], gotObjs[i], wantObjs[i])
		}
	}
	if typed != 6 {
		t.Fatalf("%d of the 6 pods (3 in the apiserver's frames, 3 in others) decoded typed", typed)
	}
	if got := gotObjs[0].(metav1.Object).GetResourceVersion(); got != pod.ResourceVersion {
		t.Fatalf("the first pod's resourceVersion %q, want %q", got, pod.ResourceVersion)
	}
	if s, ok := gotObjs[4].(*metav1.Status); !ok || s.Code != 410 {
		t.Fatalf("the ERROR event's object: %#v, want the Status of code 410, typed as client-go gives it", gotObjs[4])
	}

	// A frame whose object is cut short, or has no kind, fails as it does
	// with client-go's decoders.
	for _, bad := range []string{
		`{"type":"ADDED","object":` + string(podJSON[:len(podJSON)/2]) + "}\n",
		`{"type":"ADDED","object":{"metadata":{"name":"x"}}}` + "\n",
		`{"type":"RENAMED","object":` + string(podJSON) + "}\n",
	} {
		_, _, wantErr := decodeStream(t, std, []byte(bad))
		_, _, gotErr := decodeStream(t, lean, []byte(bad))
		if wantErr == nil || gotErr == nil {
			t.Fatalf("frame %.60q…: client-go's error %v, ingest's %v; want both to fail", bad, wantErr, gotErr)
		}
	}
}

// TestSplitWatchEvent: the apiserver's shape is taken apart without
// decoding; anything else is left to client-go's decoder.
func TestSplitWatchEvent(t *testing.T) {
	for _, c := range []struct {
		frame, typ, obj string
		ok              bool
	}{
		{`{"type":"ADDED","object":{"kind":"Pod"}}`, "ADDED", `{"kind":"Pod"}`, true},
		{"{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\"}}\n", "BOOKMARK", `{"kind":"Pod"}`, true},
		{`{"type":"ADDED","object":{"kind":"Pod"},"x":{}}`, "", "", false},                              // a field more: not one value
		{`{"type":"ADDED","object":{"a":"}\"{,[","b":[{}]}}`, "ADDED", `{"a":"}\"{,[","b":[{}]}`, true}, // brackets in a string
		{`{"type":"ADDED","object":{"a":"\\"},"x":{"b":"}"}}`, "", "", false},                           // an escaped backslash ends the string
		{`{"type":"ADDED","object":{"kind":"Pod"`, "", "", false},
		{`{"type":"NEW","object":{"kind":"Pod"}}`, "", "", false},
		{`{"object":{"kind":"Pod"},"type":"ADDED"}`, "", "", false},
		{`{"type":"ADDED","object":null}`, "", "", false},
		{`{"type":"ADDED"}`, "", "", false},
	} {
		typ, obj, ok := splitWatchEvent([]byte(c.frame))
		if ok != c.ok || typ != c.typ || string(obj) != c.obj {
			t.Errorf("%s: %q %q %v, want %q %q %v", c.frame, typ, obj, ok, c.typ, c.obj, c.ok)
		}
	}
}

// BenchmarkWatchDecode: a stream of pod updates read by client-go's
// dynamic client, and by ingest's (NewClient), in the same run.
func BenchmarkWatchDecode(b *testing.B) { benchmarkWatch(b, false) }

// BenchmarkWatchIngest: what ingest does with each pod a watch serves,
// up to its record's body — decoding the watch, compacting the pod (its
// hash, its facts), encoding the record — with client-go's dynamic
// client's decoders (the map, Compact) and with ingest's (the pod typed,
// compactWatched), in the same run.
//
//	go test -run '^$' -bench WatchIngest -benchtime 2s ./ingest/
func BenchmarkWatchIngest(b *testing.B) { benchmarkWatch(b, true) }

// benchmarkWatch reads 200 pod updates through each client's decoders
// and, with record, makes each one's record body.
func benchmarkWatch(b *testing.B, record bool) {
	var stream bytes.Buffer
	const events = 200
	for i := range events {
		stream.WriteString(watchFrame(b, watch.Modified, watchPod(i)))
	}
	std := dynamic.ConfigFor(&rest.Config{}).NegotiatedSerializer
	for _, c := range []struct {
		name string
		ns   runtime.NegotiatedSerializer
	}{{"client-go", std}, {"ingest", newLeanSerializer(std)}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(stream.Len()))
			b.ReportAllocs()
			for b.Loop() {
				_, objs, err := decodeStream(b, c.ns, stream.Bytes())
				if err != nil || len(objs) != events {
					b.Fatalf("%d events, %v", len(objs), err)
				}
				if record {
					recordBodies(b, objs)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*events), "µs/event")
		})
	}
}

// recordBodies makes the record body of each pod, as ingest does.
func recordBodies(b *testing.B, objs []runtime.Object) {
	for _, obj := range objs {
		var o journal.Observed
		var err error
		switch x := obj.(type) {
		case *unstructured.Unstructured:
			o, err = Compact(Pods, x)
		case *watchedPod:
			o = compactWatched(x)
		}
		if err != nil {
			b.Fatal(err)
		}
		if _, err := journal.EncodeBody(&o); err != nil {
			b.Fatal(err)
		}
	}
}
