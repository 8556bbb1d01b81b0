package main

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// recordSource is the command line's name for a ctl.Source without the
// live API (--dir, --export, --nats-url): the readers live in package ctl,
// shared with the kubectl plugin.
type recordSource struct {
	dir, export string
	nats        journal.NATSConfig
	stream      string
}

func (s recordSource) source() ctl.Source {
	return ctl.Source{Dir: s.dir, Export: s.export, NATS: s.nats, Stream: s.stream}
}

func (s recordSource) describe() string { return s.source().Describe() }

func (s recordSource) read(ctx context.Context, fn func(journal.Record) error) error {
	return s.source().Read(ctx, fn)
}

func (s recordSource) readFrom(ctx context.Context, base func(*projections.Books) error, fn func(journal.Record) error) error {
	return s.source().ReadFrom(ctx, base, fn)
}

func openExisting(dir string) (*journal.Journal, error) { return ctl.OpenExisting(dir) }

func readStream(ctx context.Context, cfg journal.NATSConfig, stream string, from uint64, fn func(journal.Record) error) error {
	return ctl.ReadStream(ctx, cfg, stream, from, fn)
}

func openJetStream(ctx context.Context, cfg journal.NATSConfig, stream string) (jetstream.JetStream, jetstream.Stream, func(), error) {
	return ctl.OpenJetStream(ctx, cfg, stream)
}

func streamJournalID(ctx context.Context, cfg journal.NATSConfig, stream string) (string, error) {
	return ctl.StreamJournalID(ctx, cfg, stream)
}
