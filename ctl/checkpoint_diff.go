package ctl

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// diffBooks names where a checkpoint's books differ from the fold of the
// records before it, as a checkpoint encodes them: each field or map
// entry that differs, as deep as the books are plain data, in a stable
// order ("State.Pods[shop/web-3].Image differs", "Open[k] is only in the
// checkpoint"). It returns at most limit lines (0: all), the last saying
// how many more there are; none when the encodings are equal. An auditor
// reads it when a checkpoint does not hold what its records say
// (AuditCheckpoints). It walks the books by reflection, outside the pure
// fold, which encodes nothing.
func diffBooks(fold, checkpoint *projections.Books, limit int) []string {
	d := differ{limit: limit}
	d.value("", reflect.ValueOf(fold).Elem(), reflect.ValueOf(checkpoint).Elem())
	if d.more > 0 {
		d.out = append(d.out, fmt.Sprintf("and %d more", d.more))
	}
	return d.out
}

type differ struct {
	out   []string
	limit int
	more  int
}

func (d *differ) add(line string) {
	if d.limit <= 0 || len(d.out) < d.limit-1 {
		d.out = append(d.out, line)
		return
	}
	d.more++
}

// value compares a and b at path: maps with string keys entry by entry,
// plain structs field by field (exported fields: what a checkpoint
// holds), anything else by its encoding.
func (d *differ) value(path string, a, b reflect.Value) {
	for a.Kind() == reflect.Pointer && b.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil() {
		a, b = a.Elem(), b.Elem()
	}
	switch {
	case a.Kind() == reflect.Map && a.Type().Key().Kind() == reflect.String:
		d.maps(path, a, b)
	case a.Kind() == reflect.Struct && walkable(a.Type()):
		for i := range a.NumField() {
			if f := a.Type().Field(i); f.IsExported() && f.Tag.Get("cbor") != "-" {
				d.value(join(path, f.Name), a.Field(i), b.Field(i))
			}
		}
	default:
		if !bytes.Equal(encoded(a), encoded(b)) {
			d.add(path + " differs")
		}
	}
}

func (d *differ) maps(path string, a, b reflect.Value) {
	keys := make([]string, 0, a.Len()+b.Len())
	for _, m := range []reflect.Value{a, b} {
		for it := m.MapRange(); it.Next(); {
			keys = append(keys, it.Key().String())
		}
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		kv := reflect.ValueOf(k).Convert(a.Type().Key())
		va, vb := a.MapIndex(kv), b.MapIndex(kv)
		at := fmt.Sprintf("%s[%s]", path, k)
		switch {
		case !va.IsValid():
			d.add(at + " is only in the checkpoint")
		case !vb.IsValid():
			d.add(at + " is missing from the checkpoint")
		default:
			d.value(at, va, vb)
		}
	}
}

// walkable: a struct compared field by field, one with exported fields
// and no encoding of its own (PodState and time.Time have one).
func walkable(t reflect.Type) bool {
	for _, m := range []string{"MarshalCBOR", "MarshalJSON", "MarshalText", "MarshalBinary"} {
		if _, ok := reflect.PointerTo(t).MethodByName(m); ok {
			return false
		}
	}
	for i := range t.NumField() {
		if t.Field(i).IsExported() {
			return true
		}
	}
	return false
}

func encoded(v reflect.Value) []byte {
	if !v.IsValid() || !v.CanInterface() {
		return nil
	}
	b, err := journal.EncodeCheckpoint(v.Interface())
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
