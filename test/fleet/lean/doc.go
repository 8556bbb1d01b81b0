// Package lean is a simulated kubelet for Rollbook's benchmarks and tests:
// the behaviours package fleet documents for its kwok stages, in plain Go,
// cheap enough that a few cores keep up with 10,000 pods. Command
// cmd/leankubelet runs it as its own process (fleet.Options{Kind:
// fleet.Lean}), so a benchmark reads its CPU time and peak RSS apart from
// the cluster's.
//
// The core is Step, a pure function: a pod (spec and current status), the
// time and what was seen pending before in, the status the kubelet would
// report now, whether to delete the pod, and when to look again out. The
// shell, Kubelet, is the loop around it:
//
//	for key := range queue {             // one worker per key at a time
//		pod := informer.Get(key)         // the latest copy the watch gave
//		out := Step(Input{Pod: pod, Now: time.Now(), Seen: seen[key]}, delays)
//		patch pods/status (out.Status) with pod's resourceVersion, or delete with grace 0
//		seen[key] = out.Seen
//		if out.Wake > 0 { queue.AddAfter(key, out.Wake) }
//	}
//
// Every event of a pod on a managed node queues its key; a key is worked
// on by one worker at a time, so a pod's transitions are serialized. Step
// is level triggered: it compares the status with the spec, so it returns
// no status once they agree, and the same pod gives the same decision
// however many events led to it. Each write carries the resourceVersion
// Step read: when anything wrote the pod meanwhile the apiserver refuses it
// (409) and the write is dropped, as the newer event queues the pod again
// and Step sees the newer state. So a stale decision never lands (a restart
// computed from an old copy would rename containers the runtime never
// restarted). Delays are timers (the queue's AddAfter), counted from when
// the kubelet first saw the need (Seen), not from the last event, so
// unrelated writes to a pod do not postpone its restart.
//
// What it does, for nodes annotated Config.NodeAnnotation (those
// fleet.CreateNodes makes):
//
//   - Nodes: status Ready with the other conditions False, addresses and
//     node info on the first report, a heartbeat every HeartbeatPeriod;
//     the node's Lease in kube-node-lease renewed every quarter of
//     LeaseDuration (40 s as kwok is run), owned by the node. That keeps
//     the node lifecycle controller from marking the node NotReady or
//     tainting it.
//   - Pods bound to those nodes, as package fleet documents for kwok: a new
//     pod runs (after Delays.Start, default 0): phase Running, containers
//     running, started and ready, containerID containerd://<sha256>, imageID
//     ImageID(image), podIP (10.64.0.0/12, in order) and hostIP,
//     startTime, init containers completed and sidecars running. The Ready
//     condition follows the kubelet's rule with spec.readinessGates; gate
//     conditions are never written. An image change restarts that
//     container alone after Delays.ImageChange (new imageID and
//     containerID, restartCount +1, lastState.terminated). A resize shows
//     in status resources and allocatedResources after Delays.Resize.
//     status.observedGeneration (and the conditions') follows
//     metadata.generation, in the write that carries out the restart or
//     resize the new generation asks for (one write per restart, as kwok
//     makes). A pod with a deletionTimestamp and a grace
//     period is deleted with grace 0; one left with grace 0 for 5 s (a
//     delete cut short between its two writes) is deleted again.
//   - Failure injection by image name, as fleet documents: pullfail,
//     crashloop, slowstart, samedigest.
//
// Not simulated: image changes of init containers, probes, resize
// conditions, pod IP uniqueness across restarts of the kubelet (addresses
// start from a random point), and containerd's normalization of
// containerStatuses[].image (the spec's image is repeated).
package lean
