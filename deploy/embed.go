// Package deploy holds Rollbook's Kubernetes manifests — the InPlaceRollout
// CRD, the controller's RBAC, the controller itself, an example NATS
// JetStream cluster — embedded, so tests and `rollbook demo` apply exactly
// the files a user applies with kubectl:
//
//	if err := deploy.ApplyCRD(ctx, cfg); err != nil { ... } // waits until Established
//	objs, err := deploy.Apply(ctx, cfg, deploy.RBAC, deploy.ApplyOptions{})
//
// The Helm chart in chart/ renders the same objects; its crds/ holds a copy
// of crd.yaml that a test keeps identical.
package deploy

import (
	_ "embed"
)

// CRD is crd.yaml: the inplacerollouts.rollbook.dev CustomResourceDefinition.
//
//go:embed crd.yaml
var CRD []byte

// RBAC is rbac.yaml: the rollbook ServiceAccount (namespace rollbook-system)
// and its least-privilege ClusterRole, Role and bindings.
//
//go:embed rbac.yaml
var RBAC []byte

// Tenancy is tenancy.yaml: the rollbook-edit and rollbook-view ClusterRoles
// that aggregate into admin/edit and view, and the ValidatingAdmissionPolicy
// (with its binding) that refuses a rollout setting images or selecting
// pods unless its author may patch pods in its namespace.
//
//go:embed tenancy.yaml
var Tenancy []byte

// Controller is deployment.yaml: the rollbook-system Namespace, the
// controller StatefulSet (one journal volume per replica), its Service and
// PodDisruptionBudget.
//
//go:embed deployment.yaml
var Controller []byte

// NATS is nats/nats.yaml: an example three-node NATS JetStream cluster for
// an R3 journal stream (`rollbook run --nats-url=...`).
//
//go:embed nats/nats.yaml
var NATS []byte
