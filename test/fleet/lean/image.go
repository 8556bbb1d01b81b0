package lean

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

// ImageID is the imageID reported for a container started from image, as
// containerd would: the normalized repository (docker.io/library/ for bare
// names) at the digest the image pins, or else at the sha256 of the image
// string, so rolling back to an image restores its imageID.
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

// kind is what an image asks of the simulated runtime: "" for a normal
// container, else one of the failure injections (the first that matches).
func kind(image string) string {
	for _, k := range []string{PullFail, CrashLoop, SlowStart} {
		if strings.Contains(image, k) {
			return k
		}
	}
	return ""
}
