package node

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The images every node has. Their names use a registry host that does not
// exist, so nothing can ever pull them: pods use imagePullPolicy: Never.
const (
	// AppV1 and AppV2 run `httpd` serving /version (the image's version)
	// on port 8080; they differ only in that version, so in digest.
	AppV1 = "rollbook.local/app:v1"
	AppV2 = "rollbook.local/app:v2"
	// Sidecar sleeps; it is the container that must not restart when the
	// app's image changes.
	Sidecar = "rollbook.local/sidecar:v1"
	// Pause is containerd's pinned sandbox image.
	Pause = "rollbook.local/pause:v1"
	// Missing is never imported: a pod using it waits in ErrImageNeverPull.
	Missing = "rollbook.local/missing:v1"
)

// AppPort is where the app images serve /version.
const AppPort = 8080

// fixedTime makes the images reproducible: the same busybox gives the same
// digests on every run, so a journal from one run names the same images.
var fixedTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// busyboxApplets get symlinks in /bin so scripts and kubectl-exec users can
// call them by name.
var busyboxApplets = []string{"sh", "sleep", "httpd", "cat", "echo", "ls", "ps", "wget", "env", "kill", "true", "false", "date", "hostname", "mkdir", "rm", "nc", "grep"}

// The containers are PID 1 in their PID namespace, where the kernel drops
// signals that have no handler: without the trap, SIGTERM would be ignored
// and every stop (so every in-place restart) would last the whole grace
// period. `sleep & wait` keeps the shell able to run the trap at once.
const (
	appScript = `trap 'exit 0' TERM INT
echo "app $APP_VERSION starting"
httpd -p ` + "8080" + ` -h /www
while :; do sleep 3600 & wait $!; done
`
	idleScript = `trap 'exit 0' TERM INT
echo "$0 starting"
while :; do sleep 3600 & wait $!; done
`
)

// imageSpec is one image: the shared busybox layer plus its own files.
type imageSpec struct {
	ref        string
	files      map[string]string // path -> content (mode 0644; scripts run via sh)
	entrypoint []string
	env        []string
}

func imageSpecs() []imageSpec {
	app := func(version string) imageSpec {
		return imageSpec{
			ref: "rollbook.local/app:" + version,
			files: map[string]string{
				"app/run.sh":  appScript,
				"www/version": version + "\n",
			},
			entrypoint: []string{"/bin/sh", "/app/run.sh"},
			env:        []string{"APP_VERSION=" + version},
		}
	}
	idle := func(ref, script string) imageSpec {
		return imageSpec{
			ref:        ref,
			files:      map[string]string{script: idleScript},
			entrypoint: []string{"/bin/sh", "/" + script},
		}
	}
	return []imageSpec{
		app("v1"), app("v2"),
		idle(Sidecar, "sidecar.sh"),
		idle(Pause, "pause.sh"),
	}
}

// buildImages writes one docker-archive tarball per repository into dir
// (several tags of a repository share a tarball, so its layers are stored
// once) and returns the tarballs by repository.
func buildImages(busybox, dir string) (map[string]string, error) {
	base, err := baseLayer(busybox)
	if err != nil {
		return nil, err
	}
	byRepo := map[string]map[name.Tag]v1.Image{}
	for _, s := range imageSpecs() {
		img, err := s.build(base)
		if err != nil {
			return nil, err
		}
		tag, err := name.NewTag(s.ref)
		if err != nil {
			return nil, fmt.Errorf("node: image name %s: %w", s.ref, err)
		}
		repo := tag.Context().Name()
		if byRepo[repo] == nil {
			byRepo[repo] = map[name.Tag]v1.Image{}
		}
		byRepo[repo][tag] = img
	}
	out := map[string]string{}
	for repo, imgs := range byRepo {
		path := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_", ".", "_").Replace(repo)+".tar")
		if err := tarball.MultiWriteToFile(path, imgs); err != nil {
			return nil, fmt.Errorf("node: writing image tarball %s: %w", path, err)
		}
		out[repo] = path
	}
	return out, nil
}

func (s imageSpec) build(base v1.Layer) (v1.Image, error) {
	var entries []tarEntry
	for p, content := range s.files {
		entries = append(entries, tarEntry{name: p, body: []byte(content), mode: 0o644})
	}
	top, err := layerFrom(entries)
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: fixedTime},
		Config: v1.Config{
			Entrypoint: s.entrypoint,
			Env:        append([]string{"PATH=/bin"}, s.env...),
			WorkingDir: "/",
			Labels:     map[string]string{"org.opencontainers.image.ref.name": s.ref},
		},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("node: image %s: %w", s.ref, err)
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: fixedTime}, CreatedBy: "rollbook: busybox"}},
		mutate.Addendum{Layer: top, History: v1.History{Created: v1.Time{Time: fixedTime}, CreatedBy: "rollbook: " + s.ref}},
	)
	if err != nil {
		return nil, fmt.Errorf("node: image %s: %w", s.ref, err)
	}
	return img, nil
}

// baseLayer holds the static busybox, its applet links and the few files a
// container expects (/etc/passwd for user lookups, empty mount points).
func baseLayer(busybox string) (v1.Layer, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("node: reading busybox: %w", err)
	}
	entries := []tarEntry{
		{name: "bin/", dir: true, mode: 0o755},
		{name: "bin/busybox", body: bb, mode: 0o755},
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/passwd", body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), mode: 0o644},
		{name: "etc/group", body: []byte("root:x:0:\nnogroup:x:65534:\n"), mode: 0o644},
		{name: "tmp/", dir: true, mode: 0o1777},
		{name: "root/", dir: true, mode: 0o700},
		{name: "app/", dir: true, mode: 0o755},
		{name: "www/", dir: true, mode: 0o755},
	}
	for _, a := range busyboxApplets {
		entries = append(entries, tarEntry{name: "bin/" + a, link: "busybox"})
	}
	return layerFrom(entries)
}

type tarEntry struct {
	name string
	body []byte
	link string
	dir  bool
	mode int64
}

func layerFrom(entries []tarEntry) (v1.Layer, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: fixedTime, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("node: building layer: %w", err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				return nil, fmt.Errorf("node: building layer: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("node: building layer: %w", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return nil, fmt.Errorf("node: building layer: %w", err)
	}
	return l, nil
}

// importImages loads the tarballs into containerd's k8s.io namespace (the
// one the CRI plugin serves), unpacked for the snapshotter in use, and
// names each image repo@sha256:<manifest digest> as well, as a pull from a
// registry would: the CRI plugin then reports that name as the container's
// imageID. It returns every tag's digest name.
//
// The digest names are added with `ctr images tag` rather than `ctr images
// import --digests`: in containerd 2.4.2 the transfer-service import skips
// digest names for images that have a name in the archive unless
// --skip-digest-for-named is given, the opposite of what that flag says.
func (n *Node) importImages(ctx context.Context) (map[string]string, error) {
	dir := filepath.Join(n.Dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	tarballs, err := buildImages(n.opts.Busybox, dir)
	if err != nil {
		return nil, err
	}
	repos := make([]string, 0, len(tarballs))
	for r := range tarballs {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	for _, repo := range repos {
		if _, err := n.ctr(ctx, "images", "import", "--base-name", repo,
			"--snapshotter", n.snapshotter, tarballs[repo]); err != nil {
			return nil, err
		}
	}
	digests, err := n.imageDigests(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range imageSpecs() {
		if _, err := n.ctr(ctx, "images", "tag", "--local", "--force", s.ref, digests[s.ref]); err != nil {
			return nil, err
		}
	}
	// Read back: the names are containerd's, not our intention.
	out, err := n.ctr(ctx, "images", "ls", "-q")
	if err != nil {
		return nil, err
	}
	have := strings.Fields(out)
	for ref, d := range digests {
		if !slices.Contains(have, d) {
			return nil, fmt.Errorf("node: image %s has no digest name %s after tagging; containerd has %v", ref, d, have)
		}
	}
	return digests, nil
}

// imageDigests maps each of our tags to the digest name of its manifest,
// repo@sha256:..., from containerd's own image list.
func (n *Node) imageDigests(ctx context.Context) (map[string]string, error) {
	out, err := n.ctr(ctx, "images", "ls")
	if err != nil {
		return nil, err
	}
	// REF TYPE DIGEST SIZE PLATFORMS LABELS
	digestOf := map[string]string{}
	for _, line := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(line); len(f) >= 3 && strings.HasPrefix(f[2], "sha256:") {
			digestOf[f[0]] = f[2]
		}
	}
	digests := map[string]string{}
	for _, s := range imageSpecs() {
		d, ok := digestOf[s.ref]
		if !ok {
			return nil, fmt.Errorf("node: image %s missing after import; containerd has:\n%s", s.ref, out)
		}
		digests[s.ref] = s.ref[:strings.LastIndex(s.ref, ":")] + "@" + d
	}
	return digests, nil
}

// ctr runs containerd's CLI against this node's containerd, in the k8s.io
// namespace.
func (n *Node) ctr(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	full := append([]string{"--address", n.Socket, "--namespace", "k8s.io"}, args...)
	cmd := exec.CommandContext(ctx, n.bins.ctr, full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("node: ctr %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// ImportImage loads a docker-archive tarball whose image is named ref
// (repo:tag, as written in the archive) into the node's containerd, for
// pods with imagePullPolicy: Never.
func (n *Node) ImportImage(ctx context.Context, tarball, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("node: image name %s: %w", ref, err)
	}
	if _, err := n.ctr(ctx, "images", "import", "--base-name", tag.Context().Name(), "--snapshotter", n.snapshotter, tarball); err != nil {
		return err
	}
	out, err := n.ctr(ctx, "images", "ls", "-q")
	if err != nil {
		return err
	}
	if !slices.Contains(strings.Fields(out), ref) {
		return fmt.Errorf("node: image %s missing after importing %s; containerd has %s", ref, tarball, out)
	}
	return nil
}
