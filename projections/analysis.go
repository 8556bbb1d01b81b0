package projections

import (
	"fmt"
	"strings"

	"rollbook.dev/rollbook/journal"
)

// AnalysisRun is what the journal's measurements say of one step's
// analysis for one target revision, check by check.
type AnalysisRun struct {
	Checks map[string]*CheckRun
}

// CheckRun counts one check's measurements. Passes counts those that met
// the success condition since the last that did not.
type CheckRun struct {
	Measurements, Passes, Failures, Errors int32
	// Invalid says why the check cannot be evaluated at all.
	Invalid string
	// LastAt is the time of the last measurement's record: the next one
	// is due an interval later.
	LastAt                            int64
	LastValue, LastVerdict, LastError string
}

// AnalysisKey is the Analyses key of a rollout's step for a revision.
func AnalysisKey(rollout, revision string, step int32) string {
	return fmt.Sprintf("%s|%s|%d", rollout, revision, step)
}

// MeasurePendingKey is the Pending key of a measure action's check: one
// measurement of a check is in flight at a time. A measure key ends in
// the measurement's number; the rest names the check.
func MeasurePendingKey(actionKey string) string {
	if i := strings.LastIndexByte(actionKey, '/'); i > 0 {
		return actionKey[:i]
	}
	return actionKey
}

// Measured folds a measure action's result.
func (s *State) Measured(f journal.ActionFact, at int64) {
	m := f.Measurement
	if m == nil {
		return
	}
	if s.Analyses == nil {
		s.Analyses = map[string]*AnalysisRun{}
	}
	k := AnalysisKey(f.Rollout, f.Revision, m.Step)
	run := s.Analyses[k]
	if run == nil {
		run = &AnalysisRun{Checks: map[string]*CheckRun{}}
		s.Analyses[k] = run
	}
	c := run.Checks[m.Check]
	if c == nil {
		c = &CheckRun{}
		run.Checks[m.Check] = c
	}
	c.Measurements++
	c.LastAt, c.LastValue, c.LastVerdict, c.LastError = at, m.Value, m.Verdict, m.Error
	switch m.Verdict {
	case journal.VerdictPass:
		c.Passes++
	case journal.VerdictFail:
		c.Failures++
		c.Passes = 0
	case journal.VerdictInvalid:
		c.Errors++
		c.Invalid = m.Error
	default:
		c.Errors++
	}
}

// forgetAnalyses drops a deleted rollout's measurements.
func (s *State) forgetAnalyses(rollout string) {
	for k := range s.Analyses {
		if strings.HasPrefix(k, rollout+"|") {
			delete(s.Analyses, k)
		}
	}
}
