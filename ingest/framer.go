package ingest

import (
	"io"

	"k8s.io/apimachinery/pkg/runtime"
)

// objectFramer cuts a watch's JSON stream into its frames by their
// brackets, where client-go's framer decodes each frame with
// encoding/json to find where it ends (a whole validating pass, a tenth
// of the controller's CPU with pods decoded once). The frame's decoders
// read it in full after, and fail on what is not JSON as before. Writing
// is client-go's.
type objectFramer struct{ runtime.Framer }

func (f objectFramer) NewFrameReader(r io.ReadCloser) io.ReadCloser {
	return &frameReader{r: r}
}

// frameReader returns one JSON object (or array) per Read, as client-go's
// JSON frame reader: a frame larger than the caller's buffer comes in
// parts, each but the last with io.ErrShortBuffer.
type frameReader struct {
	r   io.ReadCloser
	buf []byte // read from r, not yet returned: buf[start:]
	// start is where the next frame's bytes begin in buf; scan is how far
	// the frame has been scanned, with depth, inString and escaped the
	// scanner's state there (kept across reads of r).
	start, scan              int
	depth                    int
	inString, escaped, begun bool
	remaining                []byte // a frame's part the caller's buffer could not hold
	err                      error
}

func (r *frameReader) Read(data []byte) (int, error) {
	if len(r.remaining) > 0 {
		n := copy(data, r.remaining)
		if r.remaining = r.remaining[n:]; len(r.remaining) > 0 {
			return n, io.ErrShortBuffer
		}
		r.remaining = nil
		return n, nil
	}
	frame, err := r.next()
	if err != nil {
		return 0, err
	}
	n := copy(data, frame)
	if n < len(frame) {
		r.remaining = append([]byte(nil), frame[n:]...)
		return n, io.ErrShortBuffer
	}
	return n, nil
}

// next returns the next frame, valid until the next call.
func (r *frameReader) next() ([]byte, error) {
	for {
		if end, ok := r.cut(); ok {
			frame := r.buf[r.start:end]
			r.start, r.scan, r.begun = end, end, false
			return frame, nil
		}
		if r.err != nil {
			if r.start < len(r.buf) && r.begun && r.err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, r.err
		}
		r.fill()
	}
}

// cut scans buf from scan for the end of the frame that starts at start
// (after any space); ok says one ends, at end.
func (r *frameReader) cut() (end int, ok bool) {
	b := r.buf
	for i := r.scan; i < len(b); i++ {
		c := b[i]
		switch {
		case !r.begun:
			switch c {
			case ' ', '\t', '\r', '\n':
				r.start = i + 1
				continue
			}
			r.begun, r.depth = true, 0
			if c != '{' && c != '[' {
				// Not an object: a frame of one byte, which its
				// decoder refuses, as client-go's framer would.
				r.scan = i + 1
				return i + 1, true
			}
			r.depth = 1
		case r.inString:
			switch {
			case r.escaped:
				r.escaped = false
			case c == '\\':
				r.escaped = true
			case c == '"':
				r.inString = false
			}
		case c == '"':
			r.inString = true
		case c == '{' || c == '[':
			r.depth++
		case c == '}' || c == ']':
			if r.depth--; r.depth == 0 {
				r.scan = i + 1
				return i + 1, true
			}
		}
	}
	r.scan = len(b)
	return 0, false
}

// fill reads more of the stream, first dropping what was returned.
func (r *frameReader) fill() {
	if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:])
		r.buf, r.scan, r.start = r.buf[:n], r.scan-r.start, 0
	}
	if cap(r.buf)-len(r.buf) < 16<<10 {
		grown := make([]byte, len(r.buf), 2*cap(r.buf)+32<<10)
		copy(grown, r.buf)
		r.buf = grown
	}
	n, err := r.r.Read(r.buf[len(r.buf):cap(r.buf)])
	r.buf = r.buf[:len(r.buf)+n]
	if err != nil {
		r.err = err
	}
}

func (r *frameReader) Close() error { return r.r.Close() }
