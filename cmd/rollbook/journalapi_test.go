package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"rollbook.dev/rollbook/ctl"
)

// TestJournalAPIOnStandby: a standby has no journal to serve and names the
// leader to ask; the API is read only.
func TestJournalAPIOnStandby(t *testing.T) {
	srv := &metricsServer{}
	srv.setStandby(true)
	srv.setLeader("rollbook-1-7")
	hs := httptest.NewServer(srv.mux())
	defer hs.Close()
	for _, tc := range []struct {
		method string
		code   int
		says   string
	}{
		{http.MethodGet, http.StatusServiceUnavailable, `the leader is "rollbook-1-7"`},
		{http.MethodPost, http.StatusMethodNotAllowed, "read only"},
	} {
		req, err := http.NewRequest(tc.method, hs.URL+ctl.JournalPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.says) {
			t.Errorf("%s: %d %q, want %d and %q", tc.method, resp.StatusCode, body, tc.code, tc.says)
		}
	}
}
