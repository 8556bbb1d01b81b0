package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// AuditPolicy is the apiserver's audit policy when Options.AuditLog is
// set. Writes to pods and their subresources, to events and to the rollout
// resources of Rollbook and OpenKruise are logged at level Request (the
// body too, to see what a controller sent); every other request at level
// Metadata, so reads can be counted as well; health probes not at all.
// Only ResponseComplete (and Panic) events are written: one per request.
const AuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: None
  nonResourceURLs: [/healthz*, /livez*, /readyz*]
- level: Request
  verbs: [create, update, patch, delete, deletecollection]
  resources:
  - group: ""
    resources: [pods, pods/status, pods/resize, pods/eviction, pods/ephemeralcontainers, events]
  - group: events.k8s.io
    resources: [events]
  - group: rollbook.dev
    resources: [inplacerollouts, inplacerollouts/status]
  - group: apps.kruise.io
    resources: [clonesets, clonesets/status, clonesets/scale]
- level: Metadata
`

// auditArgs writes the policy and returns the apiserver's audit flags, or
// nothing when the audit log is off.
func (c *Cluster) auditArgs() ([]string, error) {
	if !c.opts.AuditLog {
		return nil, nil
	}
	policy := filepath.Join(c.Dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(AuditPolicy), 0o644); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.AuditLog = filepath.Join(c.Dir, "audit.log")
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + c.AuditLog,
		"--audit-log-format=json",
		// NB: the log rotates at maxsize MB, and 0 means lumberjack's
		// default of 100 MB, which a 10,000-pod run passes; a rotated
		// log would lose the counts' first part.
		"--audit-log-maxsize=100000",
		"--audit-log-maxbackup=0",
		// Blocking (the default) writes each event in the request's own
		// goroutine, so an event is in the file by the time its request's
		// client could make another one (see SyncAuditLog).
		"--audit-log-mode=blocking",
	}, nil
}

// AuditEvent is the part of an audit.k8s.io/v1 Event that counting needs.
type AuditEvent struct {
	Level      string `json:"level"`
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	UserAgent string `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"responseStatus"`
	// Annotations hold, for a request that took over 500 ms, the
	// apiserver's latency by layer ("apiserver.latency.k8s.io/apf-queue-wait",
	// ".../etcd", ...), as Go durations.
	Annotations map[string]string `json:"annotations"`
	// RequestObject is the request's body, logged at level Request.
	RequestObject            json.RawMessage `json:"requestObject"`
	RequestReceivedTimestamp time.Time       `json:"requestReceivedTimestamp"`
	StageTimestamp           time.Time       `json:"stageTimestamp"`
}

// Resource is "resource" or "resource/subresource" of the object the
// request was for, or the path of a non-resource request ("/version").
func (e *AuditEvent) Resource() string {
	if e.ObjectRef == nil {
		path, _, _ := strings.Cut(e.RequestURI, "?")
		return path
	}
	if e.ObjectRef.Subresource != "" {
		return e.ObjectRef.Resource + "/" + e.ObjectRef.Subresource
	}
	return e.ObjectRef.Resource
}

// Code is the response's HTTP status code (0 when the event has none).
func (e *AuditEvent) Code() int {
	if e.ResponseStatus == nil {
		return 0
	}
	return e.ResponseStatus.Code
}

// IsWrite reports whether the request's verb changes state.
func (e *AuditEvent) IsWrite() bool {
	switch e.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// AuditKey is what CountAudit groups requests by.
type AuditKey struct {
	UserAgent string
	User      string
	Verb      string
	Resource  string // resource[/subresource]
	Code      int
}

// String is "verb resource code", the form benchmarks print.
func (k AuditKey) String() string { return fmt.Sprintf("%s %s %d", k.Verb, k.Resource, k.Code) }

// ReadAuditLog calls fn with every event of the JSON-lines audit log at
// path, in the order written, until fn returns an error.
func ReadAuditLog(path string, fn func(*AuditEvent) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cluster: audit log: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for n := 1; ; n++ {
		var e AuditEvent
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			// NB: the last line can be half written while the apiserver
			// runs; callers that need it whole call SyncAuditLog first.
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return fmt.Errorf("cluster: audit log %s, event %d: %w", path, n, err)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
}

// CountAudit counts the ResponseComplete events of the audit log at path
// that keep accepts (all when keep is nil), by user agent, user, verb,
// resource and response code: one event per request that got an answer.
func CountAudit(path string, keep func(*AuditEvent) bool) (map[AuditKey]int64, error) {
	out := map[AuditKey]int64{}
	err := ReadAuditLog(path, func(e *AuditEvent) error {
		if e.Stage != "ResponseComplete" || (keep != nil && !keep(e)) {
			return nil
		}
		out[AuditKey{UserAgent: e.UserAgent, User: e.User.Username, Verb: e.Verb, Resource: e.Resource(), Code: e.Code()}]++
		return nil
	})
	return out, err
}

// SyncAuditLog returns once every request that completed before the call
// is in the audit log: it makes a request of its own (GET /version with a
// unique query) and polls the log until that request's event is there. In
// blocking mode the apiserver writes a request's event after its response,
// in the request's goroutine, so an earlier request's event precedes the
// marker's unless that goroutine stalled for longer than the marker's
// whole round trip.
func (c *Cluster) SyncAuditLog(ctx context.Context, timeout time.Duration) error {
	if c.AuditLog == "" {
		return errors.New("cluster: SyncAuditLog: the cluster runs without an audit log (Options.AuditLog)")
	}
	hc, err := rest.HTTPClientFor(c.Config())
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	// Only what is written after now needs reading.
	st, err := os.Stat(c.AuditLog)
	if err != nil {
		return fmt.Errorf("cluster: audit log: %w", err)
	}
	from := st.Size()
	marker := "/version?audit-sync=" + randomToken()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+marker, nil)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cluster: audit sync request: %w", err)
	}
	resp.Body.Close()
	want := []byte(`"requestURI":"` + marker + `"`)
	err = Poll(ctx, timeout, func() error {
		f, err := os.Open(c.AuditLog)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Seek(from, io.SeekStart); err != nil {
			return err
		}
		r := bufio.NewReaderSize(f, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if bytes.Contains(line, want) && bytes.Contains(line, []byte(`"stage":"ResponseComplete"`)) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("no event for %s in %s yet", marker, c.AuditLog)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: audit log sync: %w", err)
	}
	return nil
}
