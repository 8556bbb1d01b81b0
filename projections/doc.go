// Package projections folds journal records into the compact state the
// planner reads. It is pure: no I/O, no clocks, no goroutines (a test
// checks its imports). Time is the time of the last Tick record.
//
// The caller's loop:
//
//	s := projections.New()
//	j.Follow(ctx, 1, func(r journal.Record) error {
//		if err := s.Apply(r); err != nil {
//			return err // an unknown kind or a corrupt body: stop, never skip
//		}
//		... when the loop decides to plan: planner.Plan(s)
//		return nil
//	})
package projections
