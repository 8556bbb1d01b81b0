// Command prepare builds every component the tests run — etcd and the
// Kubernetes control plane, kubelet, kwok, containerd, helm and Jaeger — into the cache,
// with progress, so that test timeouts never include a cold build.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
	"rollbook.dev/rollbook/test/node"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := cluster.KubernetesBinaries(ctx, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range []func(context.Context, io.Writer) (string, error){fleet.BuildKwok, node.BuildContainerd, cluster.Helm, cluster.BuildJaeger} {
		if _, err := b(ctx, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "prepare: all components ready in %s\n", time.Since(start).Round(time.Second))
}
