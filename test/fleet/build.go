package fleet

import (
	"context"
	"io"

	"rollbook.dev/rollbook/test/cluster"
)

// BuildKwok builds kwok into the cache (once) and returns its directory.
func BuildKwok(ctx context.Context, progress io.Writer) (string, error) {
	return cluster.GoInstall(ctx, progress, "kwok-"+cluster.KwokVersion, nil, "sigs.k8s.io/kwok/cmd/kwok@"+cluster.KwokVersion)
}
