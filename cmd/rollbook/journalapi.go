package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/ctl"
)

// The journal API (ctl.JournalPath) serves the leading controller's
// journal, read only, to `kubectl rollbook history|trace|report|undo|plan
// --controller` (ctl.Live). The journal is one history of every namespace the
// controller manages, so reading it is a cluster-wide right of its own:
// "get" on inplacerollouts/journal (group rollbook.dev), which no built-in
// role grants; deploy/rbac.yaml's ClusterRole rollbook-journal-reader does.
//
// The caller proves who they are with their Kubernetes bearer token. The
// controller asks the apiserver (a TokenReview) who that is, then (a
// SubjectAccessReview) whether they may: the apiserver's authenticators and
// authorizers decide, as for kube-rbac-proxy or an aggregated API server.
// NB: the controller sees the token; serve this port to callers only over
// a channel you trust (kubectl port-forward tunnels through the apiserver).
var journalAccess = authzv1.ResourceAttributes{Group: "rollbook.dev", Resource: "inplacerollouts", Subresource: "journal", Verb: "get"}

func (m *metricsServer) journalAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "the journal API is read only: GET", http.StatusMethodNotAllowed)
		return
	}
	c := m.current()
	if c == nil {
		m.mu.Lock()
		leader := m.leader
		m.mu.Unlock()
		// The Lease's holder identity is "<hostname>-<pid>": in a pod, the
		// hostname is the pod's name.
		http.Error(w, fmt.Sprintf("this process does not lead, so it has no journal to serve; the leader is %q (the Lease's holder: <pod>-<pid>): port-forward to that pod", leader), http.StatusServiceUnavailable)
		return
	}
	req, err := ctl.ParseJournalRequest(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	user, code, err := authorizeJournal(r.Context(), c.auth, r.Header.Get("Authorization"))
	if err != nil {
		c.log.Info("rollbook: journal API refused", "user", user, "code", code, "why", err)
		http.Error(w, err.Error(), code)
		return
	}
	if req.Rollout != "" {
		req.From = max(req.From, c.rolloutOrigin(req.Rollout))
	}
	w.Header().Set("Content-Type", ctl.LiveContentType)
	if err := ctl.WriteJournal(r.Context(), w, c.j, req); err != nil {
		// The stream ends without its end mark: the reader reports it cut.
		c.log.Warn("rollbook: journal API", "user", user, "err", err)
		return
	}
	c.log.Info("rollbook: journal read", "user", user, "from", req.From, "latestCheckpoint", req.Latest, "rollout", req.Rollout)
}

// authorizeJournal returns who the bearer token in header belongs to, or
// the HTTP code and why they may not read the journal.
func authorizeJournal(ctx context.Context, cs kubernetes.Interface, header string) (user string, code int, err error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		return "", http.StatusUnauthorized, fmt.Errorf("rollbook: send your Kubernetes bearer token (Authorization: Bearer …); kubectl rollbook sends the one of your kubeconfig")
	}
	tr, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: strings.TrimSpace(token)}}, metav1.CreateOptions{})
	if err != nil {
		return "", http.StatusServiceUnavailable, fmt.Errorf("rollbook: reviewing the token: %w", err)
	}
	if !tr.Status.Authenticated {
		return "", http.StatusUnauthorized, fmt.Errorf("rollbook: the apiserver does not accept the token: %s", tr.Status.Error)
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	attrs := journalAccess
	sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra, ResourceAttributes: &attrs,
	}}, metav1.CreateOptions{})
	if err != nil {
		return u.Username, http.StatusServiceUnavailable, fmt.Errorf("rollbook: reviewing access: %w", err)
	}
	if !sar.Status.Allowed {
		why := sar.Status.Reason
		if why == "" {
			why = "no RBAC rule allows it"
		}
		return u.Username, http.StatusForbidden, fmt.Errorf(`rollbook: %s may not read the journal: it takes "get" on inplacerollouts/journal (group rollbook.dev) in all namespaces, e.g. a ClusterRoleBinding to the ClusterRole rollbook-journal-reader (%s)`, u.Username, why)
	}
	return u.Username, http.StatusOK, nil
}

// setLeader records the Lease's current holder, for the journal API's
// answer on a standby.
func (m *metricsServer) setLeader(id string) { m.mu.Lock(); m.leader = id; m.mu.Unlock() }
