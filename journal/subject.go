package journal

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultSubjectPrefix is the first subject token of outbox messages.
const DefaultSubjectPrefix = "rollbook"

// Subject returns the NATS subject of r: prefix.<kind>.<namespace>, where
// kind is the record kind in lower case and namespace comes from the key,
// or is "_" for a cluster-scoped key or any key of another shape. With
// prefix "rollbook":
//
//	pods/shop/web-0                           -> rollbook.observed.shop
//	inplacerollouts.rollbook.dev/shop/web     -> rollbook.observed.shop
//	gate/shop/web-0/<uid>/<rev> (an action)   -> rollbook.actionintended.shop
//	nodes/node-1                              -> rollbook.observed._
//	watch/pods/shop (a namespaced watch)      -> rollbook.cursor.shop
//	watch/statefulsets.apps (cluster-wide)    -> rollbook.cursor._
//
// so a subscriber of "rollbook.*.shop" gets every record about namespace
// shop, its watch cursors included; "rollbook.actionfailed.>" every failure.
func Subject(prefix string, r Record) string {
	return prefix + "." + strings.ToLower(r.Kind.String()) + "." + namespaceToken(r.Kind, r.Key)
}

// namespaceToken extracts the namespace of a record's key as a valid
// subject token. Object and action keys ("resource/namespace/name...") hold
// it second; watch cursor keys ("watch/resource/namespace", ingest's
// cursorName) third, and a cluster-wide watch's ("watch/resource") none.
// Kubernetes namespaces are DNS labels, so they never contain '_', '.',
// '*' or '>' and never collide with "_".
func namespaceToken(kind Kind, key string) string {
	_, rest, ok := strings.Cut(key, "/")
	if !ok {
		return "_"
	}
	var ns string
	if kind == KindCursor {
		// NB: the resource may hold dots ("statefulsets.apps") but never a
		// '/', so what follows it is the namespace, and nothing after that.
		_, ns, ok = strings.Cut(rest, "/")
		ok = ok && !strings.Contains(ns, "/")
	} else {
		ns, _, ok = strings.Cut(rest, "/")
	}
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

// ValidateSubjectPrefix checks a subject prefix (OutboxOptions.SubjectPrefix):
// one or more literal tokens joined by dots, so that prefix+".>" is a
// stream's subjects and captures only the outbox's own messages.
func ValidateSubjectPrefix(p string) error {
	if p == "" {
		return errors.New("journal: empty subject prefix")
	}
	for _, t := range strings.Split(p, ".") {
		if !validToken(t) {
			return fmt.Errorf("journal: subject prefix %q is not a literal subject: dot-separated tokens, none empty, with no '*', '>' or whitespace", p)
		}
	}
	return nil
}
