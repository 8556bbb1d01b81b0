package ingest

import (
	"crypto/sha256"
	"encoding/json"
	"hash"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// objectHash is the SHA-256 of obj encoded as Unstructured.MarshalJSON
// encodes it (encoding/json: keys sorted, HTML characters escaped, and a
// json.Encoder's final newline): the ObjectHash ingest has always
// journaled, so records hash the same across versions. It writes the
// encoding straight into the hash through a small buffer instead of
// building it by reflection into one large slice first (BENCHMARKS P2:
// re-encoding every watched object was ~10 % of the controller's CPU).
// Values of types an unstructured object does not hold from JSON are
// encoded by encoding/json itself.
func objectHash(obj map[string]any) ([32]byte, error) {
	e := encoders.Get().(*hashEncoder)
	defer encoders.Put(e)
	e.h.Reset()
	e.buf = e.buf[:0]
	if err := e.value(obj); err != nil {
		return [32]byte{}, err
	}
	e.buf = append(e.buf, '\n') // json.Encoder's, which Unstructured.MarshalJSON used
	e.flush()
	var sum [32]byte
	e.h.Sum(sum[:0])
	return sum, nil
}

// encoders are reused: a watch decodes thousands of objects a second.
var encoders = sync.Pool{New: func() any { return &hashEncoder{h: sha256.New(), buf: make([]byte, 0, 4096)} }}

type hashEncoder struct {
	h   hash.Hash
	buf []byte
}

func (e *hashEncoder) flush() {
	e.h.Write(e.buf)
	e.buf = e.buf[:0]
}

func (e *hashEncoder) grow() {
	if len(e.buf) > 3072 {
		e.flush()
	}
}

func (e *hashEncoder) value(v any) error {
	e.grow()
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case string:
		e.string(x)
	case bool:
		e.buf = strconv.AppendBool(e.buf, x)
	case int64:
		e.buf = strconv.AppendInt(e.buf, x, 10)
	case float64:
		return e.float(x)
	case map[string]any:
		if x == nil {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		e.buf = append(e.buf, '{')
		for i, k := range keys {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.string(k)
			e.buf = append(e.buf, ':')
			if err := e.value(x[k]); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, '}')
	case []any:
		if x == nil {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		e.buf = append(e.buf, '[')
		for i, item := range x {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := e.value(item); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return err
		}
		e.buf = append(e.buf, b...)
	}
	return nil
}

// float formats as encoding/json does: the shortest representation, in
// exponent form only for very small or large magnitudes.
func (e *hashEncoder) float(f float64) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		_, err := json.Marshal(f) // the same error encoding/json gives
		return err
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(e.buf)
	e.buf = strconv.AppendFloat(e.buf, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(e.buf) - start
		if n >= 4 && e.buf[len(e.buf)-4] == 'e' && e.buf[len(e.buf)-3] == '-' && e.buf[len(e.buf)-2] == '0' {
			e.buf[len(e.buf)-2] = e.buf[len(e.buf)-1]
			e.buf = e.buf[:len(e.buf)-1]
		}
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// string writes s quoted and escaped as encoding/json does with HTML
// escaping on (its default).
func (e *hashEncoder) string(s string) {
	e.buf = append(e.buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			e.buf = append(e.buf, s[start:i]...)
			switch b {
			case '\\', '"':
				e.buf = append(e.buf, '\\', b)
			case '\b':
				e.buf = append(e.buf, '\\', 'b')
			case '\f':
				e.buf = append(e.buf, '\\', 'f')
			case '\n':
				e.buf = append(e.buf, '\\', 'n')
			case '\r':
				e.buf = append(e.buf, '\\', 'r')
			case '\t':
				e.buf = append(e.buf, '\\', 't')
			default:
				e.buf = append(e.buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			e.buf = append(e.buf, s[start:i]...)
			e.buf = append(e.buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			e.buf = append(e.buf, s[start:i]...)
			e.buf = append(e.buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	e.buf = append(e.buf, s[start:]...)
	e.buf = append(e.buf, '"')
}
