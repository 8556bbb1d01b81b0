package journal

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// pebbleLogger routes Pebble's messages to slog: its routine notes ("Found
// 0 WALs") at debug level, errors as errors. Fatalf keeps Pebble's contract:
// it does not return.
//
// Errors are limited to one a second, with a count of those dropped: on a
// full disk Pebble retries a failed flush in a tight loop and logs each
// attempt, thousands a second.
type pebbleLogger struct {
	l     *slog.Logger
	limit *errorLimit
}

type errorLimit struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func newPebbleLogger(l *slog.Logger) pebbleLogger { return pebbleLogger{l: l, limit: &errorLimit{}} }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("journal: pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.limit.mu.Lock()
	now := time.Now()
	if now.Sub(p.limit.last) < time.Second {
		p.limit.dropped++
		p.limit.mu.Unlock()
		return
	}
	dropped := p.limit.dropped
	p.limit.last, p.limit.dropped = now, 0
	p.limit.mu.Unlock()
	if dropped > 0 {
		p.l.Error("journal: pebble: "+fmt.Sprintf(format, args...), "similar_errors_dropped", dropped)
		return
	}
	p.l.Error("journal: pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("journal: pebble: fatal: " + fmt.Sprintf(format, args...))
	os.Exit(2)
}
