package journal

import (
	"errors"
	"strings"
)

// DefaultSubjectPrefix is the first subject token of outbox messages.
const DefaultSubjectPrefix = "rollbook"

// Subject returns the NATS subject of r: prefix.<kind>.<namespace>, where
// kind is the record kind in lower case and namespace comes from the key
// ("pods/<ns>/<name>", "inplacerollouts.rollbook.dev/<ns>/<name>"), or "_"
// for a cluster-scoped key ("nodes/<name>") or any key of another shape.
// Subscribers filter with e.g. "rollbook.*.shop" or "rollbook.actionfailed.>".
func Subject(prefix string, r Record) string {
	return prefix + "." + strings.ToLower(r.Kind.String()) + "." + namespaceToken(r.Key)
}

// namespaceToken extracts the namespace of a "resource/namespace/name" key
// as a valid subject token. Kubernetes namespaces are DNS labels, so they
// never contain '_', '.', '*' or '>' and never collide with "_".
func namespaceToken(key string) string {
	_, rest, ok := strings.Cut(key, "/")
	if !ok {
		return "_"
	}
	ns, _, ok := strings.Cut(rest, "/")
	if !ok || !validToken(ns) {
		return "_"
	}
	return ns
}

// validToken reports whether s can be one subject token as is.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.', c == '*', c == '>', c <= ' ', c >= 0x7f:
			return false
		}
	}
	return true
}

// validPrefix checks a subject prefix: one or more valid tokens joined by dots.
func validPrefix(p string) error {
	if p == "" {
		return errors.New("journal: empty subject prefix")
	}
	for _, t := range strings.Split(p, ".") {
		if !validToken(t) {
			return errors.New("journal: subject prefix " + p + " is not a valid literal subject")
		}
	}
	return nil
}
