package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// testNATS is a real NATS server with JetStream on a loopback port, its
// store under a directory of the test: to the controllers under test, an
// external NATS (--nats-url).
type testNATS struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
	URL  string
}

func startTestNATS(t *testing.T, dir string) *testNATS {
	t.Helper()
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	n := &testNATS{t: t, dir: filepath.Join(dir, "nats-server"), port: port, URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	n.start()
	t.Cleanup(func() { n.srv.Shutdown() })
	return n
}

func (n *testNATS) start() {
	n.t.Helper()
	srv, err := journal.StartEmbeddedNATS(n.dir, journal.NATSListen("127.0.0.1", n.port))
	if err != nil {
		n.t.Fatal(err)
	}
	n.srv = srv
}

// restart stops the server and starts it again on the same port and store.
func (n *testNATS) restart() {
	n.t.Helper()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.start()
}
