package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestProductionBinaryLinksNoTestHarness: the binary the image ships
// (-tags nodemo) depends on no package under test/, which the default
// build does link (for `rollbook demo`).
func TestProductionBinaryLinksNoTestHarness(t *testing.T) {
	deps := func(tags ...string) []string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command("go", append(args, Package)...).Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return strings.Fields(string(out))
	}
	const harness = "rollbook.dev/rollbook/test/"
	var linked []string
	for _, p := range deps("-tags", Tags) {
		if strings.HasPrefix(p, harness) {
			linked = append(linked, p)
		}
	}
	if len(linked) > 0 {
		t.Errorf("the production binary (-tags %s) links %v", Tags, linked)
	}
	demo := false
	for _, p := range deps() {
		demo = demo || strings.HasPrefix(p, harness)
	}
	if !demo {
		t.Errorf("the default build links nothing under %s: is rollbook demo still there?", harness)
	}
}

// TestImageReproducible builds the image twice from this checkout: same
// digest and byte-identical tarballs; another SOURCE_DATE_EPOCH, another
// digest. The image holds a static production binary run as nonroot, with
// the CA bundle.
func TestImageReproducible(t *testing.T) {
	ctx := context.Background()
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	opts := Options{Arch: runtime.GOARCH, CACerts: DefaultCACerts}
	dir := t.TempDir()
	var sums [2][32]byte
	var digests [2]v1.Hash
	for i := range 2 {
		b, err := Build(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if digests[i], err = b.Image.Digest(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "rollbook.tar")
		if err := b.WriteTarball(path, DefaultTag); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(raw)
		if i == 0 {
			checkImage(t, b.Image, dir)
		}
	}
	if digests[0] != digests[1] || sums[0] != sums[1] {
		t.Fatalf("two builds differ: digests %s, %s; tarballs %x, %x", digests[0], digests[1], sums[0], sums[1])
	}
	t.Logf("image digest %s", digests[0])
	t.Setenv("SOURCE_DATE_EPOCH", "1767225601")
	b, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := b.Image.Digest(); d == digests[0] {
		t.Fatalf("SOURCE_DATE_EPOCH changed and the digest did not (%s): the times are not in the image", d)
	}
}

// checkImage reads the image as a runtime would: its config and the files
// of its layers.
func checkImage(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/rollbook" {
		t.Errorf("config: os %s user %q entrypoint %v, want linux, 65532:65532, /rollbook", cf.OS, cf.Config.User, cf.Config.Entrypoint)
	}
	if got := cf.Created.UTC().Unix(); got != 1767225600 {
		t.Errorf("created %d, want SOURCE_DATE_EPOCH", got)
	}
	files := map[string][]byte{}
	owners := map[string]int{}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			files[h.Name], owners[h.Name] = b, h.Uid
		}
		rc.Close()
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user:\n%s", files["etc/passwd"])
	}
	if !bytes.Contains(files["etc/ssl/certs/ca-certificates.crt"], []byte("BEGIN CERTIFICATE")) {
		t.Error("no CA bundle at /etc/ssl/certs/ca-certificates.crt")
	}
	if owners["var/lib/rollbook/"] != NonRoot {
		t.Errorf("/var/lib/rollbook owned by %d, want nonroot", owners["var/lib/rollbook/"])
	}
	bin := filepath.Join(dir, "rollbook-from-image")
	if err := os.WriteFile(bin, files["rollbook"], 0o755); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("/rollbook: %v", err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/rollbook is dynamically linked (has an ELF interpreter)")
		}
	}
	ef.Close()
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["-tags"] != Tags || settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("/rollbook built with %v, want -tags %s, CGO_ENABLED=0, -trimpath", settings, Tags)
	}
	if len(files["healthcheck"]) == 0 {
		t.Error("no /healthcheck")
	}
	if runtime.GOOS == "linux" {
		out, err := exec.Command(bin, "demo").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "this build has no demo") {
			t.Errorf("/rollbook demo: %v\n%s\nwant the production build's refusal", err, out)
		}
	}
}

// TestDefaultTagIsWhatManifestsRun: the tag the image is built under by
// default is the one deploy/deployment.yaml runs and the chart's defaults
// (image.repository and appVersion) name.
func TestDefaultTagIsWhatManifestsRun(t *testing.T) {
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if d := read("../deployment.yaml"); !strings.Contains(d, "image: "+DefaultTag+"\n") {
		t.Errorf("deploy/deployment.yaml does not run %s", DefaultTag)
	}
	repo, tag, _ := strings.Cut(DefaultTag, ":v")
	if v := read("../chart/values.yaml"); !strings.Contains(v, "repository: "+repo+"\n") {
		t.Errorf("chart values' image.repository is not %s", repo)
	}
	if c := read("../chart/Chart.yaml"); !strings.Contains(c, "appVersion: v"+tag+"\n") {
		t.Errorf("Chart.yaml's appVersion is not v%s", tag)
	}
}
