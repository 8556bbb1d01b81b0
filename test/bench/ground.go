package main

import (
	"context"
	"path/filepath"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// startGround starts what the cluster benches roll on: a control plane in
// root/cluster (benchCluster's, with an audit log when asked), a simulated
// fleet and its nodes in three zones. stop stops the fleet, then the
// control plane.
func startGround(ctx context.Context, env *benchEnv, root string, co cluster.Options, fo fleet.Options, nodes int) (c *cluster.Cluster, fl *fleet.Fleet, stop func(), err error) {
	env.logf("starting a local control plane (audit log %v)", co.AuditLog)
	co.Dir, co.Progress = filepath.Join(root, "cluster"), env.progress
	c, err = cluster.Start(ctx, benchCluster(co))
	if err != nil {
		return nil, nil, nil, err
	}
	if fo.Kind == "" {
		fo.Kind = fleet.Kwok
	}
	fo.Progress = env.progress
	env.logf("starting %s and %d nodes", fo.Kind, nodes)
	if fl, err = fleet.Start(ctx, c, fo); err != nil {
		c.Stop()
		return nil, nil, nil, err
	}
	stop = func() { fl.Stop(); c.Stop() }
	if _, err := fleet.CreateNodes(ctx, c.Clientset(), nodes, fleet.Zones); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return c, fl, stop, nil
}
