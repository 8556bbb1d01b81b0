// Command image builds Rollbook's container image from this checkout,
// without Docker or a registry, reproducibly: the same source, Go
// toolchain and CA bundle give the same image digest.
//
//	go run ./deploy/image -o rollbook.tar [-tag ghcr.io/rollbook-dev/rollbook:v0.1.0] [-arch amd64]
//
// The image holds two layers and nothing else:
//
//	base:  /etc/passwd and /etc/group (root and nonroot, uid/gid 65532),
//	       /etc/ssl/certs/ca-certificates.crt (the build host's bundle, or
//	       -ca-certs), /tmp (1777), /home/nonroot and /var/lib/rollbook
//	       (owned by nonroot: the journal volume's mount point)
//	app:   /rollbook, a static binary (CGO_ENABLED=0, -trimpath, no build
//	       ID) built with -tags nodemo: the production binary, which does
//	       not link the test harness (the demo does; see
//	       cmd/rollbook/demo_off.go); /healthcheck (deploy/image/healthcheck),
//	       the chart's `helm test` probe, as the image has no shell or wget
//
// and runs as 65532:65532 with /rollbook as its entrypoint (the chart
// passes `run ...`). Every file's time and the image's creation time are
// SOURCE_DATE_EPOCH when set, else the commit time the binary was built
// from, else the Unix epoch. The output is a docker-archive tarball, which
// `ctr images import`, `docker load`, `podman load` and `crane push` read.
// The image digest (what a registry will report after a push) is printed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "image:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("o", "rollbook.tar", "the image tarball to write (docker-archive)")
	tag := fs.String("tag", DefaultTag, "the image's name and tag")
	arch := fs.String("arch", runtime.GOARCH, "target architecture (GOARCH); the OS is linux")
	ca := fs.String("ca-certs", DefaultCACerts, "PEM bundle installed as /etc/ssl/certs/ca-certificates.crt")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := Build(ctx, Options{Arch: *arch, CACerts: *ca})
	if err != nil {
		return err
	}
	if err := b.WriteTarball(*out, *tag); err != nil {
		return err
	}
	d, err := b.Image.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s@%s\n", *out, *tag, d)
	return nil
}
