// Package ingest lists and watches Kubernetes objects through the dynamic
// client — no SharedInformers, no cache of full objects — and journals a
// compact record of every change. What it remembers per object is a UID
// and a resourceVersion (its known set, about 85 bytes an object), enough
// to drop duplicates and to find deletes it missed. Given Options.Reload
// (the controller gives it its fold's state), a stream holds even that only
// while it may meet what the journal already has: through a list, and from
// a resume until its watch passes the newest version on record. After
// that every event is new, and the set is taken back only to list again.
//
// One stream per resource and scope:
//
//	start:   cursor in the journal?  yes → probe it, watch from it (no relist)
//	                                 no  → streaming list (WatchList), else paginated
//	watch:   events → Compact → journal.Append(records, cursor) in one batch
//	passed:  the watch past the newest version on record → let the known set go (with Reload)
//	410:     relist: take the known set back (Reload), diff against it → Vanished records
//	failure: back off 800 ms … 30 s, jittered; reset once healthy
//
// The caller's loop:
//
//	in, _ := ingest.New(ingest.Options{Client: dyn, Journal: j, Resources: []ingest.Resource{ingest.Pods}})
//	go in.Run(ctx)       // returns on ctx end or a journal failure
//	in.WaitSynced(ctx)   // every stream has a complete view
//
// NB: the cursor is written in the same batch as the records it covers, so
// a crash never leaves it ahead of them; events after it are simply
// delivered again and deduplicated.
package ingest
