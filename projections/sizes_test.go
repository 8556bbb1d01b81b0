package projections

import (
	"testing"
	"unsafe"
)

// TestPerPodSizes: what the fold holds for every pod of a fleet stays
// within the sizes BENCHMARKS.md §1 counts (go test -run TestPerPodSizes -v
// prints them). A field more is a cost for every tracked pod: weigh it,
// and measure the fleet again (bench memory), before moving a budget.
func TestPerPodSizes(t *testing.T) {
	for _, s := range []struct {
		name        string
		got, budget uintptr
	}{
		{"Pod", unsafe.Sizeof(Pod{}), 112},
		{"Facts", unsafe.Sizeof(Facts{}), 80},
		{"Container (a pod holds one per container)", unsafe.Sizeof(Container{}), 48},
		{"ContainerID", unsafe.Sizeof(ContainerID{}), 40},
		{"Condition (a pod holds one per kept condition)", unsafe.Sizeof(Condition{}), 16},
		{"PodState (a rolled pod holds one, its first changed container's run inline)", unsafe.Sizeof(PodState{}), 80},
		{"containerRun (a rolled pod holds one per changed container)", unsafe.Sizeof(containerRun{}), 48},
	} {
		t.Logf("%s: %d bytes", s.name, s.got)
		if s.got > s.budget {
			t.Errorf("%s is %d bytes, over its %d", s.name, s.got, s.budget)
		}
	}
}
