package ingest

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"rollbook.dev/rollbook/journal"
)

// BenchmarkNodeRecord: the cost of journaling every node label (so that
// scatter may use any of them) against keeping only the topology labels,
// as ingest did before, in the same run: a node as a managed cloud
// labels it (22 labels, 3 of them topology), compacted and encoded.
//
//	go test -run '^$' -bench NodeRecord -benchmem ./ingest/
func BenchmarkNodeRecord(b *testing.B) {
	labels := map[string]any{
		"kubernetes.io/hostname":                   "gke-prod-pool-2-3f9a1c2e-x7kq",
		"topology.kubernetes.io/zone":              "europe-west1-b",
		"topology.kubernetes.io/region":            "europe-west1",
		"kubernetes.io/arch":                       "amd64",
		"kubernetes.io/os":                         "linux",
		"beta.kubernetes.io/arch":                  "amd64",
		"beta.kubernetes.io/os":                    "linux",
		"beta.kubernetes.io/instance-type":         "n2-standard-8",
		"node.kubernetes.io/instance-type":         "n2-standard-8",
		"failure-domain.beta.kubernetes.io/zone":   "europe-west1-b",
		"failure-domain.beta.kubernetes.io/region": "europe-west1",
		"cloud.google.com/gke-nodepool":            "pool-2",
		"cloud.google.com/gke-os-distribution":     "cos",
		"cloud.google.com/gke-boot-disk":           "pd-balanced",
		"cloud.google.com/gke-container-runtime":   "containerd",
		"cloud.google.com/gke-cpu-scaling-level":   "8",
		"cloud.google.com/gke-max-pods-per-node":   "110",
		"cloud.google.com/gke-stack-type":          "IPV4",
		"cloud.google.com/machine-family":          "n2",
		"cloud.google.com/private-node":            "false",
		"example.com/rack":                         "r17",
		"example.com/pool-tier":                    "general",
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": "gke-prod-pool-2-3f9a1c2e-x7kq", "uid": "6f1c0e8a-3d1b-4c55-9a51-0c2b7f1d9e11", "resourceVersion": "918273645", "labels": labels},
		"status":   map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}},
	}}
	for _, mode := range []string{"topology-only", "all-labels"} {
		b.Run(mode, func(b *testing.B) {
			var size int
			for b.Loop() {
				o, err := Compact(Nodes, u)
				if err != nil {
					b.Fatal(err)
				}
				if mode == "topology-only" {
					o.Node.Labels = topologyOnly(o.Node.Labels)
				}
				body, err := journal.EncodeBody(&o)
				if err != nil {
					b.Fatal(err)
				}
				size = len(body)
			}
			b.ReportMetric(float64(size), "bytes/record")
		})
	}
}
