package ctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"

	"rollbook.dev/rollbook/journal"
)

// Report renders rollout's report (the journal's only rollout when
// rollout is "") from src, read as Spans reads it, pinned to the last
// record read.
func Report(ctx context.Context, src Source, rollout string, maxRows int) (page []byte, title string, err error) {
	opts := ReportOptions{MaxRows: maxRows}
	if src.Dir != "" {
		j, err := OpenExisting(src.Dir)
		if err != nil {
			return nil, "", err
		}
		opts.JournalID = j.ID()
		j.Close()
	}
	read := rolloutReader(src, rollout, func(r journal.Record) { opts.HeadSeq, opts.HeadHash = r.Seq, r.Hash })
	spans, err := reportSpans(ctx, read, rollout, src.Describe())
	if err != nil {
		return nil, "", err
	}
	if src.Live != nil {
		opts.JournalID = src.Live.journalID
	}
	var buf bytes.Buffer
	if err := RenderReport(&buf, spans, opts); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), ReportTitle(spans), nil
}

// WriteFile writes data to path whole or not at all: a half-written
// report would look valid.
func WriteFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rollbook-report-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
