package planner

import (
	"testing"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestVerifyWaitsForTheNewImage: a pod patched to v4 while the kubelet
// had not yet taken its patch to v3 may restart for v3 first. That
// restart gives the container a new ID and image ID, as the restart to v4
// would; what it runs, as the status reports it (as given, or completed
// by the runtime), is what tells them apart. (Simulation seed 7110
// verified such a pod, ungated it, and was one pod over maxUnavailable
// when the kubelet restarted it again.)
func TestVerifyWaitsForTheNewImage(t *testing.T) {
	st := projections.NewPodState("", "", "", 0, []ContainerBefore{{Name: "app", Image: "app:v3", ImageID: "sha256:v2", ContainerID: projections.ParseContainerID("c1"), Restarts: 1}})
	running := func(statusImage, imageID, id string) *journal.PodFacts {
		return &journal.PodFacts{Containers: []journal.Container{{
			Name: "app", Image: "app:v4", StatusImage: statusImage, ImageID: imageID, ContainerID: id,
			RestartCount: 2, Ready: true, State: "running",
		}}}
	}
	for _, tc := range []struct {
		name string
		pod  *journal.PodFacts
		want bool
	}{
		{"not restarted", running("app:v2", "sha256:v2", "c1"), false},
		{"restarted for the last patch", running("app:v3", "sha256:v3", "c2"), false},
		{"restarted for the last patch, as containerd names it", running("docker.io/library/app:v3", "sha256:v3", "c2"), false},
		{"restarted with the new image", running("app:v4", "sha256:v4", "c3"), true},
		{"restarted with the new image, as containerd names it", running("docker.io/library/app:v4", "sha256:v4", "c3"), true},
		{"restarted, the runtime's name for it unknown", running("", "sha256:v4", "c3"), true},
	} {
		if ok, why := verify(facts(tc.pod), st, podTarget{}); ok != tc.want {
			t.Errorf("%s: verified %v (%s), want %v", tc.name, ok, why, tc.want)
		}
	}
}
