// Package ingest lists and watches Kubernetes objects through the dynamic
// client — no SharedInformers, no cache of full objects — and journals a
// compact record of every change. What it remembers per object is a UID
// and a resourceVersion (about 200 bytes), enough to drop duplicates and to
// find deletes it missed.
//
// One stream per resource and scope:
//
//	start:   cursor in the journal?  yes → probe it, watch from it (no relist)
//	                                 no  → streaming list (WatchList), else paginated
//	watch:   events → Compact → journal.Append(records, cursor) in one batch
//	410:     relist, diff against the known set → Vanished records
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
