package ingest

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
)

// paginatedList lists the scope in pages (for servers without WatchList),
// journals what changed page by page, then the Vanished records and the
// cursor in one last append: the cursor is never ahead of the records.
func (s *stream) paginatedList(ctx context.Context) error {
	seen := map[string]struct{}{}
	var listRV string
	var pending []journal.Entry
	clear(s.staged) // what a failed round built was never appended
	opts := metav1.ListOptions{Limit: s.in.opts.PageSize, FieldSelector: s.fieldSelector}
	// Pages are handled one at a time so a 10k-pod list never sits in
	// memory whole; every page comes from the first page's snapshot.
	for {
		page, err := s.client().List(ctx, opts)
		if err != nil {
			return fmt.Errorf("ingest: list %s: %w", s.res.Name(), err)
		}
		s.health.connected()
		if listRV == "" {
			listRV = page.GetResourceVersion()
		}
		for i := range page.Items {
			u := &page.Items[i]
			seen[Key(s.res.Name(), u.GetNamespace(), u.GetName())] = struct{}{}
			e, ok, err := s.observe(u, false)
			if err != nil {
				return err
			}
			if ok {
				pending = append(pending, e)
			}
		}
		if len(pending) >= s.in.opts.BatchSize {
			if err := s.append(ctx, nil, pending); err != nil {
				return err
			}
			pending = pending[:0]
		}
		if opts.Continue = page.GetContinue(); opts.Continue == "" {
			break
		}
	}
	pending = append(pending, s.vanished(seen, listRV)...)
	name := cursorName(s.res, s.ns)
	pending = append(pending, cursorEntry(name, listRV))
	if err := s.append(ctx, []journal.Cursor{{Name: name, Value: listRV}}, pending); err != nil {
		return err
	}
	s.markSynced()
	s.armRelease(listRV)
	return nil
}

// splitKey returns the namespace and name of a record key of s's resource.
func splitKey(r Resource, key string) (ns, name string) {
	rest := strings.TrimPrefix(key, r.Name()+"/")
	if !r.Namespaced {
		return "", rest
	}
	ns, name, _ = strings.Cut(rest, "/")
	return ns, name
}
