package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// The InPlaceRollout API, as crd.yaml defines it.
const (
	Group   = "rollbook.dev"
	Version = "v1alpha1"
	Kind    = "InPlaceRollout"
	// CRDName is the name of the CustomResourceDefinition in crd.yaml.
	CRDName = "inplacerollouts." + Group
)

// InPlaceRollouts is the resource of InPlaceRollout objects.
var InPlaceRollouts = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "inplacerollouts"}

// CRDs is the resource of CustomResourceDefinitions.
var CRDs = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// FieldManager is the server-side apply field manager of Apply and ApplyCRD.
const FieldManager = "rollbook"

// DefaultEstablishTimeout bounds ApplyCRD's wait when ctx has no deadline.
// An apiserver establishes a new CRD within a second or two; a minute
// covers a loaded one without hiding a CRD that will never be served.
const DefaultEstablishTimeout = time.Minute

// Decode splits a multi-document YAML (or JSON) manifest into objects,
// skipping empty documents.
func Decode(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("deploy: decoding document %d: %w", len(objs)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("deploy: document %d has no kind or apiVersion", len(objs)+1)
		}
		objs = append(objs, u)
	}
}

// ApplyOptions tune Apply. The zero value applies for real.
type ApplyOptions struct {
	// Namespace is used for namespaced objects that name none.
	Namespace string
	// DryRun asks the apiserver to validate and admit without persisting.
	DryRun bool
}

// Apply server-side applies every object of manifest, in order (so a
// Namespace precedes what lives in it), with strict field validation: a
// manifest with a field the server does not know fails instead of losing it.
// It returns the objects as the server answered.
func Apply(ctx context.Context, cfg *rest.Config, manifest []byte, opts ApplyOptions) ([]*unstructured.Unstructured, error) {
	objs, err := Decode(manifest)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapperWithContext(memory.NewMemCacheClientWithContext(disc))
	var out []*unstructured.Unstructured
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			// The discovery cache predates a CRD applied since; look again.
			mapper.Reset()
			m, err = mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			return out, fmt.Errorf("deploy: %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dc.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = opts.Namespace
			}
			if ns == "" {
				return out, fmt.Errorf("deploy: %s %s is namespaced and names no namespace", gvk.Kind, obj.GetName())
			}
			ri = dc.Resource(m.Resource).Namespace(ns)
		}
		got, err := applyStrict(ctx, ri, obj, opts.DryRun)
		if err != nil {
			return out, fmt.Errorf("deploy: applying %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		out = append(out, got)
	}
	return out, nil
}

// ApplyCRD creates or updates the InPlaceRollout CRD (server-side apply)
// and waits until the apiserver serves it: Established. It fails at once
// when the names are refused (NamesAccepted False, e.g. a short name taken
// by another CRD), and after ctx's deadline, or DefaultEstablishTimeout
// when ctx has none.
func ApplyCRD(ctx context.Context, cfg *rest.Config) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultEstablishTimeout)
		defer cancel()
	}
	objs, err := Decode(CRD)
	if err != nil {
		return err
	}
	if len(objs) != 1 || objs[0].GetKind() != "CustomResourceDefinition" || objs[0].GetName() != CRDName {
		return fmt.Errorf("deploy: crd.yaml must hold exactly the %s CustomResourceDefinition", CRDName)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	crds := dc.Resource(CRDs)
	if _, err := applyStrict(ctx, crds, objs[0], false); err != nil {
		return fmt.Errorf("deploy: applying CRD %s: %w", CRDName, err)
	}
	var last string
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, CRDName, metav1.GetOptions{})
		if err != nil {
			// A failed read (a restarting apiserver, a dropped
			// connection) is retried until the deadline, which then
			// reports it.
			last = err.Error()
			return false, nil
		}
		established, refused, summary := crdConditions(got)
		last = summary
		if refused != "" {
			return false, fmt.Errorf("names not accepted: %s", refused)
		}
		return established, nil
	})
	if err != nil {
		return fmt.Errorf("deploy: CRD %s not established: %w (conditions: %s)", CRDName, err, last)
	}
	return nil
}

// applyStrict server-side applies obj with strict field validation.
// NB: metav1.ApplyOptions (and so dynamic's Apply) has no field validation
// knob, and the server's default, Warn, would drop a misspelt field with a
// mere warning; the apply patch is sent by hand to ask for Strict.
func applyStrict(ctx context.Context, ri dynamic.ResourceInterface, obj *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	force := true
	po := metav1.PatchOptions{FieldManager: FieldManager, Force: &force, FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		po.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, po)
}

// crdConditions reads a CRD's status: whether it is Established, why its
// names were refused ("" when they were not), and a one-line summary for
// errors.
func crdConditions(crd *unstructured.Unstructured) (established bool, refused, summary string) {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	var b bytes.Buffer
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		typ, _ := m["type"].(string)
		status, _ := m["status"].(string)
		msg, _ := m["message"].(string)
		fmt.Fprintf(&b, "%s=%s %q; ", typ, status, msg)
		switch {
		case typ == "Established" && status == "True":
			established = true
		case typ == "NamesAccepted" && status == "False":
			refused = msg
		}
	}
	return established, refused, b.String()
}
