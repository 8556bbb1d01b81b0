package fleet

import "rollbook.dev/rollbook/test/fleet/lean"

// Failure injection: a container whose image contains one of these
// behaves accordingly (see the package documentation).
const (
	PullFail   = lean.PullFail
	CrashLoop  = lean.CrashLoop
	SlowStart  = lean.SlowStart
	SameDigest = lean.SameDigest
)

// ImageID is the imageID the fleet reports for a container started from
// image, as containerd would: the normalized repository (docker.io/library/
// for bare names) at the digest the image pins, or else at the sha256 of the
// image string. stages/pod-status.tmpl (kwok) computes the same; a retag
// ("samedigest") instead keeps the imageID it replaces.
func ImageID(image string) string { return lean.ImageID(image) }
