package cluster

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

// MainWith is Main for packages that need more than the control plane for
// all their tests (a real node, say): setup runs once the control plane is
// ready, its teardown after the last test and before the control plane
// stops. TestMain cannot do this around Main, which exits.
func MainWith(m *testing.M, setup func(ctx context.Context, c *Cluster) (teardown func(), err error)) {
	os.Exit(runMainWith(m, setup))
}

func runMainWith(m *testing.M, setup func(context.Context, *Cluster) (func(), error)) int {
	if fuzzWorker() {
		// A fuzzing worker runs only the fuzz target's function, over
		// inputs its coordinator sends: fuzzing on two cores ran three
		// control planes, one per worker and the coordinator's. A target
		// that needs the cluster fails in Shared.
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Progress: os.Stderr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the local control plane: %v\n", err)
		return 1
	}
	shared = c
	defer c.Stop()
	teardown, err := setup(ctx, c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "setting up the test fixture: %v\n", err)
		return 1
	}
	if teardown != nil {
		defer teardown()
	}
	return m.Run()
}

// fuzzWorker: this process is one of go test -fuzz's workers.
func fuzzWorker() bool {
	if !flag.Parsed() {
		flag.Parse() // testing's flags are registered by now; m.Run parses only if not parsed
	}
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
}
