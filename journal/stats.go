package journal

// Stats is a point-in-time view of a journal, for metrics and health
// checks.
type Stats struct {
	// Committed is the last sequence whose commit has returned: what
	// readers (and so the outbox) can see.
	Committed uint64
	// Uncommitted counts the sequences handed to Pebble whose commit has
	// not returned: a commit in flight, or one that failed (the next batch
	// reuses its sequences). Zero when the journal is idle; non-zero with
	// Committed not moving for seconds means writes are stuck or failing.
	Uncommitted uint64
	// Batches counts synced batches that held at least one record.
	Batches uint64
	// DiskBytes is the space the store takes on disk (tables, WAL,
	// manifest); 0 once closed.
	DiskBytes uint64
	// Closed reports that Close was called: nothing more is written.
	Closed bool
	// DiskFull reports that commits wait for disk space (see Append):
	// not ready, but nothing a restart would mend.
	DiskFull bool
}

// Stats returns the journal's statistics. It is cheap enough for every
// scrape: no I/O, one walk of Pebble's in-memory metrics.
func (j *Journal) Stats() Stats {
	// NB: committed is read before applied, and applied is always stored
	// before committed, so Uncommitted never underflows.
	s := Stats{Committed: j.committed.Load(), Batches: j.batches.Load(), DiskFull: j.diskFull.Load()}
	s.Uncommitted = j.applied.Load() - s.Committed
	j.rw.RLock()
	defer j.rw.RUnlock()
	if s.Closed = j.closed.Load(); !s.Closed {
		m := j.db.Metrics()
		s.DiskBytes = m.DiskSpaceUsage()
		// NB: Pebble counts the WAL being written at its size when opened
		// (0 for a new file), so a journal that has not rotated its WAL
		// yet would look empty. Its logical size is a floor.
		if m.WAL.Size > m.WAL.PhysicalSize {
			s.DiskBytes += m.WAL.Size - m.WAL.PhysicalSize
		}
	}
	return s
}
