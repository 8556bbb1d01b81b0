package planner

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// Every field of an action, set: strings to their field's name, numbers
// to 1, a slice to one element, a map to one entry, a pointer to a value
// set likewise. Unexported fields (time.Time's) stay as they are.
func populate(v reflect.Value, name string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("v-" + name)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float64:
		v.SetFloat(1)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		populate(s.Index(0), name)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		populate(k, name+"-key")
		populate(e, name)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		populate(p.Elem(), name)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				populate(f, v.Type().Field(i).Name)
			}
		}
	}
}

// mutate changes v, which populate set, and shares nothing with it: a
// pointer, slice or map is replaced by a changed copy.
func mutate(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "'")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(s, v)
		mutate(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			mutate(e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(v.Elem())
		mutate(p.Elem())
		v.Set(p)
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			v.Set(reflect.ValueOf(t.Add(time.Hour)))
			return
		}
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				mutate(v.Field(i))
				return
			}
		}
		panic(fmt.Sprintf("mutate: %s has no field to change", v.Type()))
	default:
		panic(fmt.Sprintf("mutate: %s", v.Type()))
	}
}

var actionKinds = []ActionKind{Gate, Ungate, Patch, Resize, Recreate, Status, Event, Measure}

func populatedAction(kind ActionKind) Action {
	var a Action
	populate(reflect.ValueOf(&a).Elem(), "")
	a.Kind = kind
	return a
}

// A field sameFields did not compare would let replay call two actions
// the same whatever that field held, without formatting them to look.
func TestSameFieldsReadsEveryField(t *testing.T) {
	for _, kind := range actionKinds {
		x := populatedAction(kind)
		if !sameFields(&x, &x) {
			t.Fatalf("%s: an action differs from itself", kind)
		}
		typ := reflect.TypeOf(x)
		for i := range typ.NumField() {
			if typ.Field(i).Name == "Kind" {
				continue
			}
			y := x
			mutate(reflect.ValueOf(&y).Elem().Field(i))
			if sameFields(&x, &y) {
				t.Errorf("%s: actions that differ in %s have the same fields", kind, typ.Field(i).Name)
			}
		}
	}
}

// sameAs answers as the comparison it replaces, formatting both actions,
// for every pair among actions of every kind and those with one field
// changed.
func TestSameAsComparesAsFormatted(t *testing.T) {
	var pool []Action
	for _, kind := range actionKinds {
		x := populatedAction(kind)
		pool = append(pool, x)
		for i := range reflect.TypeOf(x).NumField() {
			if reflect.TypeOf(x).Field(i).Name == "Kind" {
				continue
			}
			y := x
			mutate(reflect.ValueOf(&y).Elem().Field(i))
			pool = append(pool, y)
			// A status or a check changed in each of its own fields too:
			// sameFields compares a status only as sameAction does.
			if f := reflect.ValueOf(x).Field(i); f.Kind() == reflect.Pointer && f.Elem().Kind() == reflect.Struct {
				for k := range f.Elem().NumField() {
					if !f.Elem().Field(k).CanInterface() {
						continue
					}
					y := x
					p := reflect.New(f.Elem().Type())
					p.Elem().Set(f.Elem())
					mutate(p.Elem().Field(k))
					reflect.ValueOf(&y).Elem().Field(i).Set(p)
					pool = append(pool, y)
				}
			}
		}
	}
	same := 0
	for i := range pool {
		for j := range pool {
			x, y := &pool[i], &pool[j]
			formatted := x.String() == y.String() && x.Key() == y.Key() && sameAction(*x, *y)
			if got := sameAs(x, y); got != formatted {
				t.Fatalf("sameAs(%d, %d) = %v, formatted: %v\n  %s\n  %s", i, j, got, formatted, x, y)
			}
			if formatted && i != j {
				same++
			}
		}
	}
	// Pairs that differ only where String and Key do not look (an image's
	// index, a measurement's check beyond its name) are the same, as they
	// always were: the fast path must not make them differ.
	if same == 0 {
		t.Fatal("no two different actions compare the same: the test no longer covers the fallback")
	}
	t.Logf("%d actions, %d pairs the same through formatting", len(pool), same)
}
