package ingest_test

import (
	"os"
	"testing"

	"rollbook.dev/rollbook/test/cluster"
)

func TestMain(m *testing.M) {
	// The crash test re-executes this binary as the pipeline process.
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	cluster.Main(m)
}
