package journal

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// ckptEncMode is encMode appending to a caller's buffer: the same options,
// so the same bytes.
var ckptEncMode = func() cbor.UserBufferEncMode {
	m, err := cbor.CoreDetEncOptions().UserBufferEncMode()
	if err != nil {
		panic("journal: cbor enc mode: " + err.Error())
	}
	return m
}()

// pieceEncoder writes a value as core deterministic CBOR, byte for byte
// what encMode.Marshal returns for it, without ever holding the whole
// encoding. It walks the value's maps and plain structs itself, writing
// their entries in the order core deterministic encoding sorts their keys
// (bytewise on the encoded key), and hands every other value to the CBOR
// library, one at a time, into buf. After each value it calls flush (when
// set), which may take what buf holds away.
//
// What it holds beyond buf is, per map it walks, the map's encoded keys:
// a checkpoint's pods map of 10,000 entries costs ~0.5 MB of them, where
// the library encodes the whole map in one buffer and then sorts it by
// copying it into as much again.
//
// Walked: non-empty maps whose keys are strings or integers; structs whose
// fields carry no cbor or json tag and embed nothing; pointers to either.
// A type with a marshalling method of its own, or from the CBOR library,
// is never walked. TestPieceEncoderMatchesMarshal checks the bytes.
type pieceEncoder struct {
	buf   *bytes.Buffer
	flush func() error
}

func (e *pieceEncoder) encode(v reflect.Value) error {
	if v.IsValid() {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() && walked(v.Type().Elem()) {
				return e.encode(v.Elem())
			}
		case reflect.Map:
			if v.Len() > 0 && walked(v.Type()) {
				return e.encodeMap(v)
			}
		case reflect.Struct:
			if walked(v.Type()) {
				return e.encodeStruct(v)
			}
		}
	}
	return e.marshal(v)
}

// marshal writes v whole, as the library encodes it.
func (e *pieceEncoder) marshal(v reflect.Value) error {
	if !v.IsValid() {
		e.buf.WriteByte(cborNull)
	} else if err := ckptEncMode.MarshalToBuffer(v.Interface(), e.buf); err != nil {
		return err
	}
	if e.flush != nil {
		return e.flush()
	}
	return nil
}

func (e *pieceEncoder) encodeStruct(v reflect.Value) error {
	fields := plainFields(v.Type())
	e.buf.Write(AppendCBORHead(nil, majMap, uint64(len(fields))))
	for _, f := range fields {
		e.buf.Write(f.key)
		if err := e.encode(v.Field(f.index)); err != nil {
			return err
		}
	}
	return nil
}

func (e *pieceEncoder) encodeMap(v reflect.Value) error {
	type entry struct {
		key, end int // the encoded key: keys[key:end]
		val      reflect.Value
	}
	keys := make([]byte, 0, 16*v.Len())
	entries := make([]entry, 0, v.Len())
	for it := v.MapRange(); it.Next(); {
		k, start := it.Key(), len(keys)
		switch k.Kind() {
		case reflect.String:
			keys = append(AppendCBORHead(keys, majText, uint64(k.Len())), k.String()...)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if i := k.Int(); i >= 0 {
				keys = AppendCBORHead(keys, majUint, uint64(i))
			} else {
				keys = AppendCBORHead(keys, majNeg, uint64(^i))
			}
		default:
			keys = AppendCBORHead(keys, majUint, k.Uint())
		}
		entries = append(entries, entry{key: start, end: len(keys), val: it.Value()})
	}
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(keys[a.key:a.end], keys[b.key:b.end]) })
	e.buf.Write(AppendCBORHead(nil, majMap, uint64(len(entries))))
	for _, en := range entries {
		e.buf.Write(keys[en.key:en.end])
		if err := e.encode(en.val); err != nil {
			return err
		}
	}
	return nil
}

// plainField is a field of a walked struct: its encoded name (the key the
// library writes for it) and its index.
type plainField struct {
	key   []byte
	index int
}

var (
	walkedTypes sync.Map // reflect.Type -> bool
	fieldsOf    sync.Map // reflect.Type -> []plainField, sorted by key
)

// walked reports whether pieceEncoder walks values of type t (a map or a
// struct) itself: only where the library would write exactly what the
// walk writes.
func walked(t reflect.Type) bool {
	if w, ok := walkedTypes.Load(t); ok {
		return w.(bool)
	}
	w := false
	switch {
	case ownEncoding(t):
	case t.Kind() == reflect.Map:
		switch t.Key().Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			w = !ownEncoding(t.Key())
		}
	case t.Kind() == reflect.Struct:
		w = true
		var fields []plainField
		for i := range t.NumField() {
			f := t.Field(i)
			_, cborTag := f.Tag.Lookup("cbor")
			_, jsonTag := f.Tag.Lookup("json")
			if f.Anonymous || cborTag || jsonTag {
				w = false
				break
			}
			if f.IsExported() {
				fields = append(fields, plainField{key: append(AppendCBORHead(nil, majText, uint64(len(f.Name))), f.Name...), index: i})
			}
		}
		if w {
			slices.SortFunc(fields, func(a, b plainField) int { return bytes.Compare(a.key, b.key) })
			fieldsOf.Store(t, fields)
		}
	}
	walkedTypes.Store(t, w)
	return w
}

func plainFields(t reflect.Type) []plainField {
	f, _ := fieldsOf.Load(t)
	return f.([]plainField)
}

var (
	cborPkg        = reflect.TypeFor[cbor.Tag]().PkgPath()
	ownEncodingIfs = []reflect.Type{
		reflect.TypeFor[cbor.Marshaler](),
		reflect.TypeFor[encoding.BinaryMarshaler](),
		reflect.TypeFor[encoding.TextMarshaler](),
		reflect.TypeFor[json.Marshaler](),
	}
)

// ownEncoding reports whether the library encodes t other than by its
// kind: a type with a marshalling method, or one of the library's own.
func ownEncoding(t reflect.Type) bool {
	if t.PkgPath() == cborPkg || strings.HasPrefix(t.PkgPath(), cborPkg+"/") {
		return true
	}
	p := reflect.PointerTo(t)
	for _, i := range ownEncodingIfs {
		if p.Implements(i) {
			return true
		}
	}
	return false
}
