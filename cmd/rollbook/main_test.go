package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
	"rollbook.dev/rollbook/test/node"
)

// The package's tests share one control plane, one kwok fleet of 30 nodes
// in 3 zones, and one real node (kubelet + containerd + runc).
var realNode *node.Node

const kwokNodes = 30

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	if os.Getenv(runArgsEnv) != "" {
		os.Exit(runChildMain())
	}
	cluster.MainWith(m, func(ctx context.Context, c *cluster.Cluster) (func(), error) {
		if err := deploy.ApplyCRD(ctx, c.Config()); err != nil {
			return nil, err
		}
		fl, err := fleet.Start(ctx, c, fleet.Options{Progress: os.Stderr})
		if err != nil {
			return nil, err
		}
		if _, err := fleet.CreateNodes(ctx, c.Clientset(), kwokNodes, fleet.Zones); err != nil {
			fl.Stop()
			return nil, err
		}
		n, err := node.Start(ctx, c, node.Options{Progress: os.Stderr})
		if err != nil {
			fl.Stop()
			return nil, fmt.Errorf("real node: %w", err)
		}
		realNode = n
		return func() { n.Stop(); fl.Stop() }, nil
	})
}
