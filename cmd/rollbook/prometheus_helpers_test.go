package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// metricTarget is a service's /metrics whose values the test sets: what
// a real Prometheus scrapes and an analysis queries.
type metricTarget struct {
	srv    *httptest.Server
	mu     sync.Mutex
	values map[string]float64
}

func newMetricTarget(t *testing.T) *metricTarget {
	m := &metricTarget{values: map[string]float64{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for name, v := range m.values {
			fmt.Fprintf(w, "# TYPE %s gauge\n%s %s\n", name, name, strconv.FormatFloat(v, 'g', -1, 64))
		}
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *metricTarget) set(name string, v float64) {
	m.mu.Lock()
	m.values[name] = v
	m.mu.Unlock()
}

// promServer is a real Prometheus server (Debian's package, which
// test/all installs) scraping one target every second.
type promServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startPrometheus(t *testing.T, target *metricTarget) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed: apt-get install prometheus (test/all installs it): %v", err)
	}
	dir := t.TempDir()
	u, _ := url.Parse(target.srv.URL)
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: app\n  static_configs: [{targets: [%q]}]\n", u.Host)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &promServer{addr: "http://" + addr, done: make(chan struct{}), log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(p.stop)
	cluster.Eventually(t, time.Minute, "prometheus ready", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("prometheus exited:\n%s", cluster.Tail(p.log, 20))
		default:
		}
		resp, err := http.Get(p.addr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	return p
}

// waitSample waits until a query returns data: the target was scraped.
func (p *promServer) waitSample(t *testing.T, query string) {
	t.Helper()
	cluster.Eventually(t, time.Minute, "prometheus has "+query, func() error {
		resp, err := http.Get(p.addr + "/api/v1/query?query=" + url.QueryEscape(query))
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
			return fmt.Errorf("no data yet")
		}
		return nil
	})
}

// stop ends the server: replay must not need it.
func (p *promServer) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// measurements are the analysis measurements a journal holds, in order.
func measurements(t *testing.T, dir string) []journal.Measurement {
	t.Helper()
	var out []journal.Measurement
	src := recordSource{dir: filepath.Join(dir, "journal")}
	err := src.read(context.Background(), func(r journal.Record) error {
		if r.Kind != journal.KindActionSucceeded {
			return nil
		}
		var f journal.ActionFact
		if err := r.Decode(&f); err != nil {
			return err
		}
		if f.Measurement != nil {
			out = append(out, *f.Measurement)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
