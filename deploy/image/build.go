package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	// Package is the binary the image runs.
	Package = "rollbook.dev/rollbook/cmd/rollbook"
	// HealthcheckPackage is /healthcheck, the `helm test` probe.
	HealthcheckPackage = "rollbook.dev/rollbook/deploy/image/healthcheck"
	// Tags are the production build tags: no demo, so no test harness.
	Tags = "nodemo"
	// DefaultTag is the name deploy/deployment.yaml and the chart use
	// (the chart's appVersion).
	DefaultTag = "ghcr.io/rollbook-dev/rollbook:v0.1.0"
	// DefaultCACerts is Debian's bundle (package ca-certificates).
	DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"
	// NonRoot is the user and group the image runs as (distroless's
	// nonroot; the chart's runAsUser).
	NonRoot = 65532
)

// Options say what to build for.
type Options struct {
	// Arch is the GOARCH (linux only).
	Arch string
	// CACerts is the PEM bundle to install.
	CACerts string
	// ModuleDir is the module's root; found from the working directory
	// when empty.
	ModuleDir string
}

// Built is an image and how it was made.
type Built struct {
	Image   v1.Image
	Created time.Time
}

// Build compiles the production binary and assembles the image.
func Build(ctx context.Context, opts Options) (*Built, error) {
	if opts.Arch == "" {
		return nil, fmt.Errorf("image: no architecture")
	}
	ca, err := os.ReadFile(opts.CACerts)
	if err != nil {
		return nil, fmt.Errorf("image: CA bundle (apt-get install ca-certificates, or -ca-certs): %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("image: %s holds no PEM certificate", opts.CACerts)
	}
	dir, err := os.MkdirTemp("", "rollbook-image-")
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer os.RemoveAll(dir)
	bin, probe := filepath.Join(dir, "rollbook"), filepath.Join(dir, "healthcheck")
	if err := compile(ctx, opts, bin, Package); err != nil {
		return nil, err
	}
	if err := compile(ctx, opts, probe, HealthcheckPackage); err != nil {
		return nil, err
	}
	app, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	hc, err := os.ReadFile(probe)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	created, revision, err := stamp(bin)
	if err != nil {
		return nil, err
	}
	base, err := layer(created, baseFiles(ca))
	if err != nil {
		return nil, err
	}
	top, err := layer(created, []file{{name: "rollbook", body: app, mode: 0o755}, {name: "healthcheck", body: hc, mode: 0o755}})
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		Architecture: opts.Arch,
		OS:           "linux",
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			Entrypoint: []string{"/rollbook"},
			User:       fmt.Sprintf("%d:%d", NonRoot, NonRoot),
			Env:        []string{"PATH=/", "HOME=/home/nonroot", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			WorkingDir: "/home/nonroot",
			Labels: map[string]string{
				"org.opencontainers.image.source":   "https://github.com/rollbook-dev/rollbook",
				"org.opencontainers.image.revision": revision,
				"org.opencontainers.image.title":    "rollbook",
			},
		},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "rollbook deploy/image: base (users, CA certificates)"}},
		mutate.Addendum{Layer: top, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "rollbook deploy/image: go build -tags " + Tags + " " + Package + " " + HealthcheckPackage}},
	)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return &Built{Image: img, Created: created}, nil
}

// compile builds the static production binary: no cgo (no libc to ship),
// -trimpath and an empty build ID (no path or random ID of this machine in
// it), symbols stripped.
func compile(ctx context.Context, opts Options, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", Tags, "-ldflags", "-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = opts.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+opts.Arch, "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: go build: %w\n%s", err, b)
	}
	return nil
}

// stamp returns the image's creation time and the source revision:
// SOURCE_DATE_EPOCH when set (the reproducible-builds convention), else
// the commit time stamped into the binary, else the Unix epoch.
func stamp(bin string) (time.Time, string, error) {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("image: %s is no Go binary: %w", bin, err)
	}
	created, revision := time.Unix(0, 0).UTC(), "unknown"
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				created = t.UTC()
			}
		}
	}
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return time.Time{}, "", fmt.Errorf("image: SOURCE_DATE_EPOCH=%q: %w", e, err)
		}
		created = time.Unix(sec, 0).UTC()
	}
	return created, revision, nil
}

type file struct {
	name     string
	body     []byte
	dir      bool
	mode     int64
	uid, gid int
}

// baseFiles is a minimal distroless-like root: who root and nonroot are
// (user lookups, and kubelet's runAsNonRoot check on a numeric user), the
// CA bundle Go's crypto/x509 reads on Linux, and writable places.
func baseFiles(ca []byte) []file {
	return []file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/passwd", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot))},
		{name: "etc/group", mode: 0o644, body: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot))},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: ca},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700, uid: NonRoot, gid: NonRoot},
		{name: "root/", dir: true, mode: 0o700},
		{name: "tmp/", dir: true, mode: 0o1777},
		{name: "var/", dir: true, mode: 0o755},
		{name: "var/lib/", dir: true, mode: 0o755},
		{name: "var/lib/rollbook/", dir: true, mode: 0o755, uid: NonRoot, gid: NonRoot},
	}
}

// layer writes files as one tar, in name order, with fixed times and
// owners, so that the same files give the same bytes; the layer is
// gzipped by go-containerregistry (compress/gzip writes no time or name
// when none is set).
func layer(mtime time.Time, files []file) (v1.Layer, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Uid: f.uid, Gid: f.gid, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return l, nil
}

// WriteTarball writes the image as a docker-archive tarball named tag.
func (b *Built) WriteTarball(path, tag string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("image: -tag %q: %w", tag, err)
	}
	if !strings.Contains(tag, ":") {
		return fmt.Errorf("image: -tag %q: name a tag (repo:tag)", tag)
	}
	if err := tarball.WriteToFile(path, ref, b.Image); err != nil {
		return fmt.Errorf("image: writing %s: %w", path, err)
	}
	return nil
}
