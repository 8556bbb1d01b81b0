// Package actuator carries out the planner's actions against the apiserver,
// idempotently, and journals every intent before the API call and every
// outcome after it. It decides nothing: which action, when, and what to do
// about a failure are the planner's, which learns the outcome only from the
// journal (ActionSucceeded / ActionFailed records, folded by projections).
//
// # The caller's loop
//
//	act, err := actuator.New(actuator.Options{Config: cfg, Journal: j})
//	...
//	// All of a plan's intents in one append, before any write, so replay
//	// finds the whole plan on record against the sequence it came from:
//	intents, _, err := act.Intend(ctx, plan.Actions, plan.Seq)
//	for i, a := range plan.Actions { // on workers, in any order
//		_, err := act.Execute(ctx, a, intents[i])
//		if errors.Is(err, actuator.ErrJournal) {
//			return err // the journal no longer holds what was done: stop
//		}
//		// Any other err is already a journaled ActionFailed (its Class):
//		// the next plan, folded from the journal, deals with it.
//	}
//
// Do is Intend and Execute of a single action, for retries (attempt > 1)
// and tests.
//
// # What an action writes
//
// One API write per action, each with a precondition that makes it land
// only on the object the plan saw:
//
//	action    request                                  precondition
//	gate      strategic merge PATCH pods/status        metadata.uid in the body
//	ungate    strategic merge PATCH pods/status        metadata.uid in the body
//	patch     JSON PATCH pods (images, labels,         test /metadata/uid, test name+image per
//	          annotations, state)                      container; a removed key must be there
//	resize    strategic merge PATCH pods/resize        metadata.uid in the body
//	recreate  POST pods/eviction (policy/v1 Eviction)  DeleteOptions.Preconditions{UID}, and
//	                                                   the pod's PodDisruptionBudget
//	status    JSON PATCH inplacerollouts/status        test /metadata/uid, then add /status
//	event     POST events                              a name derived from the action's key
//
// A patch adds or replaces the labels and annotations the action sets and
// removes those it lists, each by its own JSON-pointer path, so every key
// the action does not name (a mesh injector's annotation, a topology label)
// stays as it is. A removal has no value to test: a key that is no longer
// there fails the whole patch, which is the same stale-plan conflict as a
// failed test.
//
// A recreate is an eviction, not a DELETE, so PodDisruptionBudgets hold:
// the apiserver deletes the pod only when its budget allows a disruption.
// The eviction answers with a bare Status, no pod and no resourceVersion,
// so its success journals an empty ResultVersion, and projections keep
// the recreate pending until the watch shows the pod terminating or
// replaced (a new UID under the name).
//
// The gate writes only the rollbook.dev/InPlaceUpdateReady condition:
// conditions merge on type, so Ready (the kubelet's) and every other
// condition are never touched. A rollout's lifecycle hooks add to that
// same write the rollbook.dev/hook label and the clearing of the hook's
// release (a label removed, a condition set False), never a write of
// their own. The happy path of a pod is gate, patch,
// ungate: three writes.
//
// The record of an intent and of its outcome share the action's Key as
// their journal key, which begins "<kind>/<namespace>/", so the outbox
// files both under the object's namespace. The intent carries the encoded
// action and the plan's sequence, for replay; the success carries the
// resourceVersion the write returned, so the action counts as in flight
// until the watch shows that version (a recreate has none: see above).
//
// # Zero reads
//
// The actuator never GETs, LISTs or WATCHes. Everything a write needs is in
// the action, and every precondition is checked by the apiserver in the
// write itself; every read Rollbook makes is ingest's watch. The RBAC it
// needs is patch on pods, pods/status, pods/resize and
// inplacerollouts/status, create on pods/eviction and events, and nothing
// else (no delete: a recreate is an eviction); TestZeroReads runs every
// action as such a service account and checks the wire. Stats.Requests
// counts what actually left, by verb.
//
// # What the apiserver answers
//
// Found against kube-apiserver v1.37.2 (the tests print each answer):
//
//   - A failed JSON-patch test (a stale image, a wrong container index, a
//     label map the plan thought absent, a stale UID in the patch): 422,
//     reason Invalid, message "the server rejected our request due to an
//     error in our request", empty details. The handler drops json-patch's
//     own message, so a failed test cannot be told from an operation on a
//     missing path; both mean the pod moved on. Classified conflict.
//   - A strategic merge patch with a stale metadata.uid (pods/status,
//     pods/resize): 422 Invalid with one cause {FieldValueInvalid,
//     metadata.uid, "field is immutable"}. Classified conflict.
//   - An eviction whose UID precondition fails: 409 Conflict, "the UID in
//     the precondition (…) does not match the UID in record (…). The object
//     might have been deleted and then recreated". Classified conflict.
//     NB: for a pod no budget guards (Pending, terminal or terminating),
//     the handler retries conflicts itself, 20 times 500 ms: a stale UID
//     is answered after about 10 s, so a request timeout must be longer.
//     NB: for a pod a budget guards, the handler takes the disruption from
//     the budget (status.disruptedPods) before it checks the UID: the 409
//     leaves the budget one disruption short until the disruption
//     controller gives it back (2 minutes), so the replanned eviction may
//     be blocked meanwhile.
//   - An eviction the pod's PodDisruptionBudget does not allow: 429
//     TooManyRequests, "Cannot evict pod as it would violate the pod's
//     disruption budget.", one cause {DisruptionBudget, "The disruption
//     budget web needs 2 healthy pods and has 2 currently"}. Classified
//     blocked; the journaled error ends with the cause's message. A pod
//     two budgets select: 500, no reason, "This pod has more than one
//     PodDisruptionBudget, which the eviction subresource does not
//     support."; blocked too (see budgetRefused).
//   - An eviction allowed: 201 with a bare Status Success. The pod gets
//     the condition DisruptionTarget True, then is deleted: at once when
//     no node is bound, else marked terminating for its kubelet.
//   - NB: a merge patch of a custom resource's status with a stale
//     metadata.uid succeeds: the CR status strategy keeps only .status
//     from the patched object. Hence the Status action's JSON patch with
//     `test /metadata/uid` (TestStatusMergePatchIgnoresUID pins this).
//   - A missing pod or rollout: 404 NotFound naming it. Classified gone. A
//     404 naming nothing (the resource is not served: the CRD is not
//     installed) is other.
//   - A resize that does not fit the node: 403 Forbidden from the
//     PodResizeValidator admission plugin with cause NodeCapacity;
//     classified invalid. A resize breaking validation (requests above
//     limits): 422 naming the field; invalid. A pod not bound to a node
//     is resized without admission checks.
//   - Image references: the apiserver refuses only leading or trailing
//     whitespace (422 on spec.containers[i].image); "App:V2" is accepted.
//
// See Classify for the full mapping.
package actuator
