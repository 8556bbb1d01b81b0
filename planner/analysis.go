package planner

import (
	"fmt"
	"strings"

	"rollbook.dev/rollbook/projections"
)

// Analysis between steps. Once a step's pods are updated, the step's
// checks are measured until each passes or one fails; the rollout goes
// past the step only when all pass. Measurements enter the planner as
// records (the measure action's outcome carries the value and the
// verdict), so replay derives the same promote or rollback from the
// journal alone. Invariants: one measurement of a check is in flight at a
// time, the next due an interval after the last one's record; a check
// that has passed or failed is not measured again for that revision; a
// rollout rolling back or rolled back measures nothing.

// Defaults of an AnalysisCheck.
const (
	defaultIntervalSeconds = 10
	defaultPasses          = 1
	defaultFailureLimit    = 0
	defaultErrorLimit      = 3
)

func int32Or(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// analyze evaluates step i's analysis for the rollout's target revision,
// asks for the measurements that are due, and returns what it says.
func (p *planning) analyze(rp *rolloutPlan, i int32, a *projections.Analysis) *projections.AnalysisStatus {
	run := p.s.Analyses[projections.AnalysisKey(rp.r.Key(), rp.t.rev, i)]
	out := &projections.AnalysisStatus{Step: i, Phase: projections.AnalysisPassed}
	for _, c := range a.Checks {
		var cr projections.CheckRun
		if run != nil && run.Checks[c.Name] != nil {
			cr = *run.Checks[c.Name]
		}
		cs := checkStatus(c, cr)
		out.Checks = append(out.Checks, cs)
		switch {
		case cs.Phase == projections.AnalysisFailed:
			out.Phase = projections.AnalysisFailed
		case cs.Phase == projections.AnalysisRunning:
			if out.Phase != projections.AnalysisFailed {
				out.Phase = projections.AnalysisRunning
			}
		}
	}
	if out.Phase != projections.AnalysisRunning || rp.spec.Paused {
		// A rollout the user paused takes no new measurement: a check
		// failing then would act (roll back) while the user holds it.
		return out
	}
	// Measure only while the analysis can still pass: a failed check
	// decides the step, and the others' measurements would be evidence
	// for nothing.
	for j, c := range a.Checks {
		if out.Checks[j].Phase == projections.AnalysisRunning {
			p.measure(rp, i, c, run)
		}
	}
	return out
}

// checkStatus is one check's verdict from its measurements so far.
func checkStatus(c projections.AnalysisCheck, cr projections.CheckRun) projections.CheckStatus {
	cs := projections.CheckStatus{
		Name: c.Name, Phase: projections.AnalysisRunning, Measurements: cr.Measurements,
		Passes: cr.Passes, Failures: cr.Failures, Errors: cr.Errors, LastValue: cr.LastValue, LastVerdict: cr.LastVerdict,
	}
	passes, failureLimit, errorLimit := int32Or(c.Passes, defaultPasses), int32Or(c.FailureLimit, defaultFailureLimit), int32Or(c.ErrorLimit, defaultErrorLimit)
	switch {
	case cr.Invalid != "":
		cs.Phase, cs.Message = projections.AnalysisFailed, "the check cannot be evaluated: "+cr.Invalid
	case cr.Failures > failureLimit:
		cs.Phase = projections.AnalysisFailed
		cs.Message = fmt.Sprintf("%d measurements did not meet %q (failure limit %d); last value %s", cr.Failures, c.SuccessCondition, failureLimit, orNone(cr.LastValue))
	case cr.Errors > errorLimit:
		cs.Phase = projections.AnalysisFailed
		cs.Message = fmt.Sprintf("%d measurements gave no value (error limit %d); last error: %s", cr.Errors, errorLimit, cr.LastError)
	case cr.Passes >= passes:
		cs.Phase = projections.AnalysisPassed
		cs.Message = fmt.Sprintf("%d measurements in a row met %q; last value %s", cr.Passes, c.SuccessCondition, orNone(cr.LastValue))
	default:
		cs.Message = fmt.Sprintf("%d of %d passes", cr.Passes, passes)
		if cr.LastVerdict != "" {
			cs.Message += fmt.Sprintf("; last %s, value %s", cr.LastVerdict, orNone(cr.LastValue))
		}
	}
	return cs
}

// measure asks for check c's next measurement when it is due and none is
// in flight.
func (p *planning) measure(rp *rolloutPlan, step int32, c projections.AnalysisCheck, run *projections.AnalysisRun) {
	var n int32
	var last int64
	if run != nil && run.Checks[c.Name] != nil {
		n, last = run.Checks[c.Name].Measurements, run.Checks[c.Name].LastAt
	}
	check := c
	a := Action{Kind: Measure, Rollout: rp.r.Key(), RolloutUID: rp.r.UID, Revision: rp.t.rev, Step: step, Check: &check, N: n + 1}
	if p.s.Pending[projections.MeasurePendingKey(a.Key())] != nil {
		return
	}
	if n > 0 {
		if due := last + int64(int32Or(c.IntervalSeconds, defaultIntervalSeconds))*1e9; p.now < due {
			p.wake(due)
			return
		}
	}
	p.try(a)
}

// reportAnalysis sets the Analysis condition and records an Event when a
// step's analysis ends. A rollout whose steps name no analysis carries no
// such condition.
func (p *planning) reportAnalysis(rp *rolloutPlan) {
	as := rp.st.Analysis
	if as == nil || as.Step < rp.promoted {
		if rp.promoted >= 0 {
			rp.conds.set("Analysis", "True", "Promoted", fmt.Sprintf("step %d (%d%%) was approved (spec.approvedSteps): the rollout went past it without waiting for its checks", rp.promoted, rp.spec.Strategy.Steps[rp.promoted].Percent))
		}
		return
	}
	percent := rp.spec.Strategy.Steps[as.Step].Percent
	var parts []string
	for _, c := range as.Checks {
		parts = append(parts, c.Name+": "+c.Message)
	}
	msg := fmt.Sprintf("step %d (%d%%): %s", as.Step, percent, strings.Join(parts, "; "))
	switch as.Phase {
	case projections.AnalysisRunning:
		rp.conds.set("Analysis", "False", "Running", msg)
	case projections.AnalysisPassed:
		rp.conds.set("Analysis", "True", "Passed", msg)
		p.event(rp.r, "Normal", "AnalysisPassed", msg+" (revision "+rp.t.rev+")")
	case projections.AnalysisFailed:
		rp.conds.set("Analysis", "False", "Failed", msg)
		p.event(rp.r, "Warning", "AnalysisFailed", msg+" (revision "+rp.t.rev+")")
	}
}

// analysisFailure is the Failed condition's message for a failed
// analysis.
func analysisFailure(as *projections.AnalysisStatus, onFailure string) string {
	var first string
	for _, c := range as.Checks {
		if c.Phase == projections.AnalysisFailed {
			first = c.Name + ": " + c.Message
			break
		}
	}
	next := "approve the step (spec.approvedSteps) to go on anyway, or change the target"
	if onFailure == "Rollback" {
		next = "updated pods are rolled back in place to their recorded images"
	}
	return fmt.Sprintf("the analysis of step %d failed: %s; %s", as.Step, first, next)
}
