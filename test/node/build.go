package node

import (
	"context"
	"io"
	"path/filepath"

	"rollbook.dev/rollbook/test/cluster"
)

// containerdModule is where containerd's commands live at
// cluster.ContainerdVersion.
const containerdModule = "github.com/containerd/containerd/v2"

// containerdBins are the paths of the binaries BuildContainerd builds.
type containerdBins struct {
	containerd, ctr, shim string
}

// BuildContainerd builds containerd, ctr and the runc shim v2 into the
// cache, once, and returns the directory holding them.
//
// CGO_ENABLED=0 because the snapshotters that need cgo (btrfs, devmapper,
// zfs) are tagged out; the overlayfs and native snapshotters are pure Go.
// GOFLAGS is given whole: GoInstall puts its own GOFLAGS=-mod=mod first, and
// the later entry wins, so -mod=mod is repeated here.
func BuildContainerd(ctx context.Context, progress io.Writer) (string, error) {
	ver := cluster.ContainerdVersion
	return cluster.GoInstall(ctx, progress, "containerd-"+ver,
		[]string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod -tags=no_btrfs,no_devmapper,no_zfs"},
		containerdModule+"/cmd/containerd@"+ver,
		containerdModule+"/cmd/ctr@"+ver,
		containerdModule+"/cmd/containerd-shim-runc-v2@"+ver,
	)
}

func containerdBinsIn(dir string) containerdBins {
	return containerdBins{
		containerd: filepath.Join(dir, "containerd"),
		ctr:        filepath.Join(dir, "ctr"),
		shim:       filepath.Join(dir, "containerd-shim-runc-v2"),
	}
}
