package main

import (
	"context"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/test/cluster"
)

// rollbookSA is the controller's ServiceAccount in deploy/rbac.yaml, and
// the user the apiserver logs for its requests.
const (
	rollbookSystem = "rollbook-system"
	rollbookSA     = "rollbook"
	rollbookUser   = "system:serviceaccount:" + rollbookSystem + ":" + rollbookSA
)

// installRollbook applies what the controller needs on a cluster: the
// InPlaceRollout CRD and deploy/rbac.yaml (the rollbook-system namespace,
// the rollbook ServiceAccount, its ClusterRole and binding).
func installRollbook(ctx context.Context, c *cluster.Cluster) error {
	if err := deploy.ApplyCRD(ctx, c.Config()); err != nil {
		return err
	}
	if err := createNamespace(ctx, c.Clientset(), rollbookSystem); err != nil {
		return err
	}
	_, err := deploy.Apply(ctx, c.Config(), deploy.RBAC, deploy.ApplyOptions{})
	return err
}

// serviceAccountKubeconfig writes at path a kubeconfig that authenticates
// as the ServiceAccount ns/name (created if missing) with a fresh token:
// the process that uses it runs with that account's RBAC, and the
// apiserver's audit log and API Priority and Fairness see it as that user.
func serviceAccountKubeconfig(ctx context.Context, c *cluster.Cluster, ns, name, path string) error {
	cfg, err := c.ServiceAccountConfig(ctx, ns, name)
	if err != nil {
		return err
	}
	return writeKubeconfig(path, cfg)
}
