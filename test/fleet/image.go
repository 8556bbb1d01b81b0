package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
)

// Failure injection: a container whose image contains one of these
// behaves accordingly (see the package documentation).
const (
	PullFail   = "pullfail"
	CrashLoop  = "crashloop"
	SlowStart  = "slowstart"
	SameDigest = "samedigest"
)

var trailingTag = regexp.MustCompile(`:[^/:]*$`)

// ImageID is the imageID the fleet reports for a container started from
// image, as containerd would: the normalized repository (docker.io/library/
// for bare names) at the digest the image pins, or else at the sha256 of the
// image string. It mirrors stages/pod-status.tmpl; a retag ("samedigest")
// instead keeps the imageID it replaces.
func ImageID(image string) string {
	repo := image
	sum := sha256.Sum256([]byte(image))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if r, d, ok := strings.Cut(image, "@"); ok {
		repo, digest = r, d
	}
	repo = trailingTag.ReplaceAllString(repo, "")
	if !strings.Contains(repo, "/") {
		repo = "docker.io/library/" + repo
	} else if host, _, _ := strings.Cut(repo, "/"); !strings.ContainsAny(host, ".:") && host != "localhost" {
		repo = "docker.io/" + repo
	}
	return repo + "@" + digest
}
