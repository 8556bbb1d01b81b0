package deploy

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rollbook.dev/rollbook/projections"
)

// TestSchemaMatchesGoTypes walks crd.yaml's schema beside the Go types of
// projections/rollout.go and fails on any field one has and the other
// lacks, a type that differs, or a field the Go type always writes (no
// omitempty) that the spec schema does not require. It needs no cluster:
// it catches drift the moment either side changes.
func TestSchemaMatchesGoTypes(t *testing.T) {
	objs, err := Decode(CRD)
	if err != nil || len(objs) != 1 {
		t.Fatalf("decoding crd.yaml: %v (%d objects)", err, len(objs))
	}
	versions, _ := objs[0].Object["spec"].(map[string]any)["versions"].([]any)
	if len(versions) != 1 {
		t.Fatalf("want one version, got %d", len(versions))
	}
	root := dig(versions[0], "schema", "openAPIV3Schema")
	props := dig(root, "properties")
	checkSchema(t, "spec", reflect.TypeFor[projections.RolloutSpec](), dig(props, "spec"), true)
	// Status fields without omitempty are always written by the
	// controller, but requiring them would make a partial status patch
	// invalid: the status schema requires nothing.
	checkSchema(t, "status", reflect.TypeFor[projections.RolloutStatus](), dig(props, "status"), false)
}

func dig(v any, path ...string) map[string]any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	m, _ := v.(map[string]any)
	return m
}

var (
	intOrString = reflect.TypeFor[intstr.IntOrString]()
	metaTime    = reflect.TypeFor[metav1.Time]()
)

func checkSchema(t *testing.T, path string, typ reflect.Type, s map[string]any, requireAlwaysWritten bool) {
	t.Helper()
	if s == nil {
		t.Errorf("%s: no schema for Go type %s", path, typ)
		return
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	want := ""
	switch {
	case typ == intOrString:
		if s["x-kubernetes-int-or-string"] != true {
			t.Errorf("%s: Go IntOrString, schema lacks x-kubernetes-int-or-string", path)
		}
		return
	case typ == metaTime:
		if s["type"] != "string" || s["format"] != "date-time" {
			t.Errorf("%s: Go metav1.Time, schema %v/%v", path, s["type"], s["format"])
		}
		return
	case typ.Kind() == reflect.String:
		want = "string"
	case typ.Kind() == reflect.Bool:
		want = "boolean"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		want = "integer"
		format := map[reflect.Kind]string{reflect.Int32: "int32", reflect.Int64: "int64"}[typ.Kind()]
		if s["format"] != nil && s["format"] != format {
			t.Errorf("%s: Go %s, schema format %v", path, typ.Kind(), s["format"])
		}
	case typ.Kind() == reflect.Slice:
		want = "array"
	case typ.Kind() == reflect.Map, typ.Kind() == reflect.Struct:
		want = "object"
	default:
		t.Errorf("%s: Go kind %s not handled by this test", path, typ.Kind())
		return
	}
	if s["type"] != want {
		t.Errorf("%s: Go %s wants type %s, schema has %v", path, typ, want, s["type"])
		return
	}
	switch typ.Kind() {
	case reflect.Slice:
		checkSchema(t, path+"[]", typ.Elem(), dig(s, "items"), requireAlwaysWritten)
	case reflect.Map:
		checkSchema(t, path+"{}", typ.Elem(), dig(s, "additionalProperties"), requireAlwaysWritten)
	case reflect.Struct:
		props := dig(s, "properties")
		var goFields, required []string
		for f := range typ.Fields() {
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			goFields = append(goFields, name)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
			checkSchema(t, path+"."+name, f.Type, dig(props, name), requireAlwaysWritten)
		}
		for name := range props {
			if !slices.Contains(goFields, name) {
				t.Errorf("%s.%s: in the schema, not in Go type %s", path, name, typ)
			}
		}
		if requireAlwaysWritten {
			var schemaRequired []string
			rs, _ := s["required"].([]any)
			for _, r := range rs {
				schemaRequired = append(schemaRequired, r.(string))
			}
			sort.Strings(required)
			sort.Strings(schemaRequired)
			if !slices.Equal(required, schemaRequired) {
				t.Errorf("%s: Go fields without omitempty %v, schema requires %v", path, required, schemaRequired)
			}
		}
	}
}
