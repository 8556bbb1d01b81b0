package deploy

import (
	"testing"

	"rollbook.dev/rollbook/test/cluster"
)

// Every test here runs against one real local control plane: the schema,
// its CEL rules and RBAC are the apiserver's to judge, not a fake's.
func TestMain(m *testing.M) {
	cluster.Main(m)
}
