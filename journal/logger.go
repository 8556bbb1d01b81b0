package journal

import (
	"fmt"
	"log/slog"
	"os"
)

// pebbleLogger routes Pebble's messages to slog: its routine notes ("Found
// 0 WALs") at debug level, errors as errors. Fatalf keeps Pebble's contract:
// it does not return.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("journal: pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("journal: pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("journal: pebble: fatal: " + fmt.Sprintf(format, args...))
	os.Exit(2)
}
