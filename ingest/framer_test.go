package ingest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"k8s.io/apimachinery/pkg/util/framer"
	"k8s.io/apimachinery/pkg/watch"
)

// trickle hands out its bytes a few at a time, as a network might.
type trickle struct {
	b   []byte
	rng *rand.Rand
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(t.b), 1+t.rng.IntN(7))
	copy(p, t.b[:n])
	t.b = t.b[n:]
	return n, nil
}

func (t *trickle) Close() error { return nil }

// frames reads every frame of r with a caller's buffer of size, putting
// back together what comes in parts (io.ErrShortBuffer), as client-go's
// streaming decoder does.
func frames(r io.Reader, size int) ([]string, error) {
	var out []string
	buf := make([]byte, size)
	var part []byte
	for {
		n, err := r.Read(buf)
		part = append(part, buf[:n]...)
		switch {
		case errors.Is(err, io.ErrShortBuffer):
			continue
		case errors.Is(err, io.EOF):
			return out, nil
		case err != nil:
			return out, err
		}
		out = append(out, string(part))
		part = nil
	}
}

// TestObjectFramerCutsAsClientGo: ingest's frame reader cuts a watch
// stream into the frames client-go's JSON framer cuts — frames spaced
// and split over lines, strings holding brackets, quotes and escapes,
// read a few bytes at a time into buffers smaller and larger than a
// frame — and ends a frame cut short by the stream as it does.
func TestObjectFramerCutsAsClientGo(t *testing.T) {
	var stream bytes.Buffer
	for i := range 20 {
		stream.WriteString(watchFrame(t, watch.Modified, watchPod(i)))
	}
	stream.WriteString(" \n\t{\"type\":\"ADDED\",\n \"object\": {\"a\":\"}]{[\\\"\\\\\",\"b\":[{},[]]}}\r\n")
	stream.WriteString(`{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}`)
	stream.WriteString(`[1,{"x":"]"}]` + "\n")
	rng := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{1, 7, 512, 4096, 1 << 20} {
		want, err := frames(framer.NewJSONFramedReader(&trickle{stream.Bytes(), rng}), size)
		if err != nil {
			t.Fatalf("client-go's framer, buffer %d: %v", size, err)
		}
		got, err := frames(objectFramer{}.NewFrameReader(&trickle{stream.Bytes(), rng}), size)
		if err != nil {
			t.Fatalf("buffer %d: %v", size, err)
		}
		if len(got) != len(want) || len(got) != 23 {
			t.Fatalf("buffer %d: %d frames, client-go's framer %d, want 23", size, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("buffer %d, frame %d:\n%q\nclient-go's:\n%q", size, i, got[i], want[i])
			}
		}
	}
	// A stream that ends inside a frame.
	cut := stream.Bytes()[:stream.Len()/2]
	_, err := frames(objectFramer{}.NewFrameReader(&trickle{cut, rng}), 4096)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a stream cut inside a frame: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

// FuzzObjectFramer: on any stream, the frames client-go's JSON framer
// reads, while they are objects or arrays (a watch's frames are objects),
// are the frames ingest's frame reader cuts, whatever the size of the
// caller's buffer; and where client-go's ends the stream cleanly, so
// does ingest's. (Past the first frame client-go refuses, both readers'
// frames fail the watch's decoding, as does a frame that is not an object.)
//
//	go test -run '^$' -fuzz FuzzObjectFramer -fuzztime 2m ./ingest/
func FuzzObjectFramer(f *testing.F) {
	for _, seed := range []string{
		watchFrame(f, watch.Modified, watchPod(1)),
		" \n\t{\"a\":\"}]{[\\\"\\\\\",\"b\":[{},[]]}}\r\n[1,{\"x\":\"]\"}]",
		`{"a":1}{"b":2} [3]`, `{"a":"\u005d"}`, `{"a":1`, `"x"{}`, `{}}`, `[]]`, "",
	} {
		f.Add([]byte(seed), uint16(7))
	}
	f.Fuzz(func(t *testing.T, stream []byte, size uint16) {
		size = max(size%4096, 1)
		want, wantErr := frames(framer.NewJSONFramedReader(io.NopCloser(bytes.NewReader(stream))), int(size))
		got, gotErr := frames(objectFramer{}.NewFrameReader(io.NopCloser(bytes.NewReader(stream))), int(size))
		for i, w := range want {
			if w[0] != '{' && w[0] != '[' {
				return // a value that is not an object: both fail the decoding here
			}
			if i >= len(got) || got[i] != w {
				t.Fatalf("frame %d of %q: client-go's framer %q, ingest's frames %q (err %v)", i, stream, w, got, gotErr)
			}
		}
		if wantErr == nil && (gotErr != nil || len(got) != len(want)) {
			t.Fatalf("%q: client-go's framer ends cleanly after %d frames; ingest's: %d frames, %v", stream, len(want), len(got), gotErr)
		}
	})
}
