package projections

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// randomWires are states of every shape the annotation takes: strings
// plain and not (quotes, HTML characters, control characters, non-ASCII),
// empty and not; no containers, an empty list, several; container IDs
// held as sums and as text.
func randomWires(n int) []stateWire {
	rng := rand.New(rand.NewPCG(7, 11))
	plain := []string{"web", "ns/rollout-1", "7c9f5d", "registry.example.com/app:v2", "sha256:" + strings.Repeat("ab", 32), ""}
	odd := []string{`"`, `\`, "<", ">", "&", "é", "\n", "\x00", "\u2028", "\x7f", "\xff"}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(3) {
			if rng.IntN(40) == 0 {
				b.WriteString(odd[rng.IntN(len(odd))])
			} else {
				b.WriteString(plain[rng.IntN(len(plain))])
			}
		}
		return b.String()
	}
	ids := []string{"", "containerd://" + strings.Repeat("0f", 32), "kwok://" + strings.Repeat("9a", 32),
		"cri-o://" + strings.Repeat("00", 32), "rkt://whatever", "dry-run", "docker://" + strings.Repeat("AB", 32)}
	ints := []int64{0, 1, -1, 42, 1 << 40, -1 << 62, 1<<63 - 1, -1 << 63}
	var out []stateWire
	for range n {
		w := stateWire{Rollout: str(), Revision: str(), PatchedAt: ints[rng.IntN(len(ints))], Label: str()}
		switch k := rng.IntN(5); k {
		case 0:
		case 1:
			w.Before = []ContainerBefore{}
		default:
			for range k - 1 {
				w.Before = append(w.Before, ContainerBefore{Name: str(), Init: rng.IntN(2) == 0, Image: str(), ImageID: str(),
					ContainerID: ParseContainerID(ids[rng.IntN(len(ids))]), Restarts: int32(ints[rng.IntN(len(ints))])})
			}
		}
		out = append(out, w)
	}
	return out
}

func plainWire(w stateWire) bool {
	ok := plainJSON(w.Rollout) && plainJSON(w.Revision) && plainJSON(w.Label)
	for _, c := range w.Before {
		ok = ok && plainJSON(c.Name) && plainJSON(c.Image) && plainJSON(c.ImageID) && plainJSON(c.ContainerID.String())
	}
	return ok
}

// unmarshalled is what json.Unmarshal reads from raw, and its error.
func unmarshalled(raw string) (stateWire, error) {
	var w stateWire
	err := json.Unmarshal([]byte(raw), &w)
	return w, err
}

// The state's JSON is encoding/json's, byte for byte, and reads back as
// encoding/json reads it; the fast paths take every state whose strings
// need no escaping.
func TestStateJSONAsEncodingJSON(t *testing.T) {
	fast := 0
	for i, w := range randomWires(3000) {
		want, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := w.appendJSON(nil)
		if ok != plainWire(w) {
			t.Fatalf("%d: appendJSON ok = %v for %s", i, ok, want)
		}
		if ok && string(got) != string(want) {
			t.Fatalf("%d: appendJSON wrote\n  %s\nencoding/json\n  %s", i, got, want)
		}
		var s PodState
		w.into(&s)
		if viaState, _ := json.Marshal(s.wire()); s.JSON() != string(viaState) {
			t.Fatalf("%d: JSON() = %s, want %s", i, s.JSON(), viaState)
		}
		if m, _ := json.Marshal(s); string(m) != s.JSON() {
			t.Fatalf("%d: json.Marshal = %s, JSON() = %s", i, m, s.JSON())
		}

		r := stateReader{s: string(want)}
		var read stateWire
		if took := r.wire(&read); took != ok {
			t.Fatalf("%d: the fast reader took %s: %v", i, want, took)
		}
		checkParse(t, string(want))
		if ok {
			fast++
		}
	}
	if fast < 1000 || fast > 2900 {
		t.Fatalf("%d of 3000 states took the fast paths: the states no longer cover both paths", fast)
	}
}

// checkParse: parseStateJSON reads raw as json.Unmarshal does.
func checkParse(t *testing.T, raw string) {
	t.Helper()
	want, wantErr := unmarshalled(raw)
	var got stateWire
	err := parseStateJSON(raw, &got)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("parseStateJSON(%q) error %v, json.Unmarshal's %v", raw, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("parseStateJSON(%q) =\n  %+v\njson.Unmarshal:\n  %+v", raw, got, want)
	}
}

// Texts near the written form, which the fast reader must refuse or
// read as encoding/json does.
func TestStateJSONNearMisses(t *testing.T) {
	base := `{"rollout":"ns/r","rev":"abc","at":1700000000,"label":"old","before":[{"name":"app","init":true,"image":"img:2","imageID":"sha256:x","containerID":"containerd://` +
		strings.Repeat("0f", 32) + `","restarts":3},{"name":"side","image":"s:1","restarts":0}]}`
	checkParse(t, base)
	misses := []string{
		strings.Replace(base, `"at":1700000000`, `"at":01700000000`, 1),
		strings.Replace(base, `"at":1700000000`, `"at":1.7e9`, 1),
		strings.Replace(base, `"at":1700000000`, `"at":-0`, 1),
		strings.Replace(base, `"at":1700000000`, `"at":99999999999999999999`, 1),
		strings.Replace(base, `"restarts":3`, `"restarts":2147483648`, 1),
		strings.Replace(base, `"init":true`, `"init":false`, 1),
		strings.Replace(base, `"label":"old"`, `"label":""`, 1),
		strings.Replace(base, `"imageID":"sha256:x"`, `"imageID":""`, 1),
		strings.Replace(base, `"name":"app"`, `"name":"\u0061pp"`, 1),
		strings.Replace(base, `"rollout"`, `"Rollout"`, 1),
		strings.Replace(base, `,"rev"`, ` ,"rev"`, 1),
		strings.Replace(base, `"before":[`, `"before":[ `, 1),
		strings.Replace(base, `}]}`, `}],"rollout":"other"}`, 1),
		strings.Replace(base, `"before":[`, `"before":null,"x":[`, 1),
		`{"rollout":"ns/r","rev":"abc","at":1,"before":null}`,
		`{"rollout":"ns/r","rev":"abc","at":1,"before":[]}`,
		`{"rollout":"ns/r","rev":"abc","at":1,"before":[]} `,
		`{"rollout":"ns/r","rev":"abc","at":1,"before":[],}`,
		`{"rollout":"ns/r","rev":"abc","at":1,"before":[{}]}`,
		`{"rollout":"ns/r","rev":"abc","at":1,"before":[{"name":"a","image":"b","restarts":1},]}`,
		`{"rollout":"ns/r","rev":"abc","at":1}`,
		`{"rollout":"ns/r","rev":"abc","at":-}`,
		`{"rollout":"ns/r`,
		``,
	}
	for i := range len(base) {
		misses = append(misses, base[:i]) // every truncation
	}
	for _, raw := range misses {
		checkParse(t, raw)
	}
}

// Whatever the text, parseStateJSON reads it as json.Unmarshal does.
func FuzzStateJSON(f *testing.F) {
	for _, w := range randomWires(40) {
		b, _ := json.Marshal(w)
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, raw string) { checkParse(t, raw) })
}
