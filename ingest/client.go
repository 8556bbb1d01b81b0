package ingest

import (
	"bytes"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// NewClient is the dynamic client ingest reads with: client-go's, with
// the same requests and the same objects, but decoding what it reads in
// fewer passes over the JSON. NB: one difference a caller sees: a watch
// delivers each pod typed (a *watchedPod: a metav1.Object, not an
// *unstructured.Unstructured), decoded once, with its hash.
//
// client-go's dynamic client reads each watch event's JSON nine times:
// once to find the frame, twice to look for a kind the envelope does not
// have, twice to decode the envelope (copying the object out), twice
// over the object for its kind, and twice to decode it into a map (each
// decoding checks the JSON, then decodes it). In a 10,000-pod rollout
// that was a third of the controller's CPU (BENCHMARKS.md §3, "The
// watch, decoded in fewer passes"). Here the frame is cut by its
// brackets (objectFramer), the envelope taken apart by its shape, and
// the object decoded once. A pod is not decoded into a map at all: it is
// hashed from its bytes and decoded typed (watchedPod), which is what
// ingest made of the map; other kinds are decoded into the map, which
// finds the kind itself. Anything of another shape goes the usual way.
func NewClient(cfg *rest.Config) (dynamic.Interface, error) {
	c := dynamic.ConfigFor(cfg)
	c.NegotiatedSerializer = newLeanSerializer(c.NegotiatedSerializer)
	c.GroupVersion = nil
	c.APIPath = "/dynamic-client-paths-are-absolute" // as dynamic.NewForConfig: never used
	rc, err := rest.UnversionedRESTClientFor(c)
	if err != nil {
		return nil, err
	}
	return dynamic.New(rc), nil
}

// leanSerializer is a dynamic client's serializer with leaner JSON
// decoders (objectDecoder, watchEventDecoder); encoding is unchanged.
type leanSerializer struct {
	runtime.NegotiatedSerializer
	infos []runtime.SerializerInfo
}

func newLeanSerializer(ns runtime.NegotiatedSerializer) leanSerializer {
	infos := slices.Clone(ns.SupportedMediaTypes())
	for i, in := range infos {
		if in.MediaType != runtime.ContentTypeJSON || in.StreamSerializer == nil {
			continue
		}
		in.Serializer = objectDecoder{in.Serializer}
		stream := *in.StreamSerializer
		stream.Serializer = watchEventDecoder{stream.Serializer}
		stream.Framer = objectFramer{stream.Framer}
		in.StreamSerializer = &stream
		infos[i] = in
	}
	return leanSerializer{NegotiatedSerializer: ns, infos: infos}
}

func (s leanSerializer) SupportedMediaTypes() []runtime.SerializerInfo { return s.infos }

// objectDecoder decodes an object (a response, or a watch event's object)
// into the unstructured form the dynamic client returns. client-go's JSON
// serializer first reads the whole object for its kind, then decodes it;
// the unstructured decoding reads the kind from the map it builds anyway,
// and fails the same way when there is none.
type objectDecoder struct{ runtime.Serializer }

func (d objectDecoder) Decode(data []byte, gvk *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if gvk != nil { // defaults to fill in: the usual way
		return d.Serializer.Decode(data, gvk, into)
	}
	switch into.(type) {
	case runtime.Unstructured:
		return unstructured.UnstructuredJSONScheme.Decode(data, nil, into)
	case nil:
		// A watch's object: a pod is decoded typed, once (watchedPod).
		if p, ok := decodeWatchedPod(data); ok {
			return p, &schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, nil
		}
		obj, kind, err := unstructured.UnstructuredJSONScheme.Decode(data, nil, nil)
		if err != nil || !metaKinds.Recognizes(*kind) {
			return obj, kind, err
		}
		// A Status (a watch's ERROR event), say: the dynamic client gives
		// meta/v1's own kinds typed.
		return d.Serializer.Decode(data, nil, nil)
	}
	return d.Serializer.Decode(data, gvk, into)
}

// metaKinds are the kinds the dynamic client decodes typed, not
// unstructured: meta/v1's (Status, WatchEvent, …), as in its own scheme.
var metaKinds = func() *runtime.Scheme {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s
}()

// watchEventDecoder decodes a watch stream's frames into
// metav1.WatchEvent. The apiserver writes them as
// {"type":"<TYPE>","object":<object>}; such a frame is taken apart by its
// shape, and its object checked to be one JSON value (the object decoder
// then reads it in full). Any other frame goes to client-go's decoder.
type watchEventDecoder struct{ runtime.Serializer }

var (
	eventPrefix = []byte(`{"type":"`)
	eventObject = []byte(`","object":`)
)

func (d watchEventDecoder) Decode(data []byte, gvk *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	ev, ok := into.(*metav1.WatchEvent)
	if !ok || gvk != nil {
		return d.Serializer.Decode(data, gvk, into)
	}
	typ, obj, ok := splitWatchEvent(data)
	if !ok {
		return d.Serializer.Decode(data, gvk, into)
	}
	ev.Type = typ
	// The frame's buffer is reused for the next frame: the object is kept
	// in a copy, as RawExtension's own decoding does.
	ev.Object = runtime.RawExtension{Raw: bytes.Clone(obj)}
	return ev, &schema.GroupVersionKind{}, nil
}

// splitWatchEvent takes a frame of the apiserver's shape apart into the
// event's type (one of watch's, so no string is allocated) and its
// object; ok is false for any frame of another shape, or whose object is
// not exactly one valid JSON value.
func splitWatchEvent(data []byte) (typ string, obj []byte, ok bool) {
	data = bytes.TrimSpace(data)
	rest, found := bytes.CutPrefix(data, eventPrefix)
	if !found {
		return "", nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return "", nil, false
	}
	switch string(rest[:end]) {
	case string(watch.Added):
		typ = string(watch.Added)
	case string(watch.Modified):
		typ = string(watch.Modified)
	case string(watch.Deleted):
		typ = string(watch.Deleted)
	case string(watch.Bookmark):
		typ = string(watch.Bookmark)
	case string(watch.Error):
		typ = string(watch.Error)
	default:
		return "", nil, false
	}
	rest, found = bytes.CutPrefix(rest[end:], eventObject)
	if !found || len(rest) < 2 || rest[len(rest)-1] != '}' {
		return "", nil, false
	}
	obj = bytes.TrimSpace(rest[:len(rest)-1])
	if len(obj) == 0 || obj[0] != '{' || !oneObject(obj) {
		return "", nil, false
	}
	return typ, obj, true
}

// oneObject says whether b is one JSON object by its brackets alone
// (objectFramer's scan): they balance, outside strings, and close only at
// b's end. The object decoder reads it in full after (and fails on what
// is not JSON, as client-go's does); this only tells the apiserver's
// frame from one with a field after its object, a whole pass of
// encoding/json's checker cheaper (it was a tenth of a watched pod's
// cost).
func oneObject(b []byte) bool {
	r := frameReader{buf: b}
	end, ok := r.cut()
	return ok && end == len(b)
}
