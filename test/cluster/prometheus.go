package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server (Debian's package, which
// test/all installs) on loopback, scraping one target every second.
type Prometheus struct {
	// Address is the HTTP API's base URL.
	Address string
	proc    *Process
}

// StartPrometheus starts Prometheus for t, scraping target (host:port),
// stopped at cleanup.
func StartPrometheus(t testing.TB, target string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed: apt-get install prometheus (test/all installs it): %v", err)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: app\n  static_configs: [{targets: [%q]}]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{Address: fmt.Sprintf("http://127.0.0.1:%d", port)}
	p.proc, err = StartProcess("prometheus", dir, bin, []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if err := p.proc.WaitFor(context.Background(), time.Minute, "ready", func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, p.Address+"/-/ready", "")
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

// Stop ends the server.
func (p *Prometheus) Stop() { p.proc.Stop(10 * time.Second) }

// WaitSample waits until query returns data: the target was scraped.
func (p *Prometheus) WaitSample(t testing.TB, query string) {
	t.Helper()
	err := p.proc.WaitFor(context.Background(), time.Minute, "holding "+query, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Address+"/api/v1/query?query="+url.QueryEscape(query), nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		if len(r.Data.Result) == 0 {
			return errors.New("no data yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
