package actuator_test

import (
	"testing"

	"rollbook.dev/rollbook/test/cluster"
)

func TestMain(m *testing.M) {
	cluster.Main(m)
}
