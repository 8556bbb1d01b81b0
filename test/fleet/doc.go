// Package fleet is a simulated fleet of nodes for Rollbook's tests: kwok
// (sigs.k8s.io/kwok, cluster.KwokVersion) playing kubelet for Node objects
// on the local control plane of package cluster, with pod stages that
// behave like the real kubelet where in-place updates care.
//
// Options.Kind Lean runs package lean's simulated kubelet instead
// (cmd/leankubelet, built from this tree): the same behaviours below in
// plain Go, as its own process, cheap enough to keep up with 10,000 pods
// where kwok's jq stages fall behind (BENCHMARKS.md, "A fleet that keeps
// up"). This package's tests run against it with -fleet=lean.
//
// Start builds kwok once into the cache, writes its configuration (Config)
// and runs it against the cluster's admin kubeconfig, managing only nodes
// annotated kwok.x-k8s.io/node=fake. CreateNodes creates such nodes, zone
// labels round robin, and waits until they are Ready and untainted; kwok
// renews their Leases so the node lifecycle controller keeps them Ready.
//
// What the simulated kubelet does to a pod on those nodes:
//
//   - A new pod runs at once: phase Running, every container running,
//     started and ready, containerID kwok://<sha256>, imageID
//     <normalized repository>@sha256:<sha256 of the image string> (see
//     ImageID), or the digest a pinned image names; init containers
//     completed, sidecars running.
//   - Ready is the kubelet's rule: every container ready (ContainersReady)
//     and, for each spec.readinessGates conditionType, a condition of that
//     type with status True (reason ReadinessGatesNotReady otherwise).
//     The gate conditions themselves are never written: that is the gate
//     owner's job (Rollbook), so a gated pod stays NotReady until it sets
//     them.
//   - An image change of a container (the only container change the
//     apiserver allows on a live pod) restarts that container alone after
//     Options.ImageChangeDelay: new imageID, new containerID, restartCount
//     +1, lastState.terminated holding the old container. The other
//     containers keep their containers.
//   - A resize (pods/resize) shows in containerStatuses[].resources and
//     allocatedResources after Options.ResizeDelay, without a restart.
//   - status.observedGeneration follows metadata.generation.
//   - A pod with a deletionTimestamp is deleted (grace 0), as the kubelet
//     does once its containers stopped, so workload controllers recreate it.
//
// Failure injection by image name (the substring anywhere in the image):
//
//   - "pullfail": the container waits with ErrImagePull, then
//     ImagePullBackOff; no container is created (empty imageID and
//     containerID, restartCount unchanged); a pod where it never ran stays
//     Pending.
//   - "crashloop": the container waits in CrashLoopBackOff, its
//     restartCount rising every Options.CrashLoopPeriod, lastState an
//     Error exit.
//   - "slowstart": the container runs but becomes ready only
//     Options.SlowStartDelay after it started.
//   - "samedigest": a retag; the new image reports the imageID of the image
//     it replaces, with a new containerID and restartCount +1 as any
//     restart.
//
// How: kwok Stages (stages/) select pods with one jq classifier
// (stages/pod.jq) that names the single next transition, in priority order
// (delete, start, restart, resize, slowready, pullbackoff, crashloop, sync,
// none), so exactly one stage matches at a time: kwok picks at random among
// matching stages. Each stage but none patches pods/status with one Go
// template (stages/pod-status.tmpl) that applies its transition and derives
// phase and conditions; none does nothing, and exists so that every event
// replaces a pod's pending delayed stage (kwok keeps it otherwise, and it
// would replay a restart from an old snapshot). Every stage is level
// triggered: it matches while the status disagrees with the spec. Each
// patch carries the resourceVersion of the snapshot it was rendered from,
// so the apiserver refuses it once anything else wrote the pod (kwok does
// not cancel a stage a worker already took): a stale play would rewrite
// every container's status from the older snapshot, renaming containers
// the kubelet never restarted, and nothing in the spec would tell the
// next event to undo it. The newer event replays the stage from fresh
// state. A cheap jq prefilter per stage spares most of the classifier runs
// (kwok tries every stage on every event). CEL selectors cannot see
// container statuses in kwok, hence jq.
//
// Not simulated: image changes of init containers, probes, pod IP
// uniqueness across kwok restarts, resize conditions (PodResizePending,
// PodResizeInProgress), and status.containerStatuses[].image as containerd
// normalizes it (it repeats the spec's image).
package fleet
