# The classifier every pod stage selects on. It names the one thing the
# simulated kubelet does next to a pod, so exactly one stage matches at a
# time (kwok picks at random among matching stages, so stages must exclude
# each other) and each stage can have its own delay. Every stage is level
# triggered: it matches while the status disagrees with the spec, so a
# patch written from a stale snapshot is corrected by the next event.
#
# Priorities: delete > start > restart > resize > slowready > pullbackoff >
# crashloop > sync > none. slowready waits for an absolute deadline, so a
# crash-looping sibling cannot starve it.

# What a container image asks the simulated runtime to do.
def kind:
  if test("pullfail") then "pullfail"
  elif test("crashloop") then "crashloop"
  elif test("slowstart") then "slowstart"
  else "normal" end;

# Requests and limits, with absent and empty treated alike.
def res: {requests: ((. // {}).requests // {}), limits: ((. // {}).limits // {})};

# 1 start, 2 restart, 3 resize, 4 slowready, 5 pullbackoff, 6 crashloop, 9 none.
def containerAction($c; $s):
  if $s == null then 1
  elif $s.image != $c.image then 2
  elif ($c.resources | res) != ($s.resources | res) then 3
  elif ($c.image | kind) == "slowstart" and $s.state.running != null and ($s.ready | not) then 4
  elif ($c.image | kind) == "pullfail" and $s.state.waiting.reason == "ErrImagePull" then 5
  elif ($c.image | kind) == "crashloop" and $s.state.waiting.reason == "CrashLoopBackOff" then 6
  else 9 end;

def condStatus($t): [(.status.conditions // [])[] | select(.type == $t) | .status][0] // "";

# The status the kubelet would report for the containers it already has:
# Pending while a container has never run, Ready only when every container
# is ready and every readiness gate has a True condition.
def needsSync:
  (.status.containerStatuses // []) as $cs
  | (.status.conditions // []) as $conds
  | ([$cs[] | .ready] | all) as $containersReady
  | ([(.spec.readinessGates // [])[] | .conditionType as $t
       | any($conds[]; .type == $t and .status == "True")] | all) as $gates
  | (if any($cs[]; .state.waiting != null and .lastState.terminated == null)
     then "Pending" else "Running" end) as $phase
  | .status.phase != $phase
    or condStatus("ContainersReady") != (if $containersReady then "True" else "False" end)
    or condStatus("Ready") != (if $containersReady and $gates then "True" else "False" end)
    or ((.metadata.generation // 0) != 0 and (.status.observedGeneration // 0) != .metadata.generation);

# A pod being deleted is deleted at once (grace 0), as the kubelet does once
# its containers stopped. Once the grace period is 0 there is nothing left to
# do: the apiserver removes the pod, or its finalizers' owners finish it; not
# deleting again avoids a NotFound race with the apiserver's own removal.
def podAction:
  if .metadata.deletionTimestamp != null then
    (if (.metadata.deletionGracePeriodSeconds // 0) > 0 then "delete" else "none" end)
  else
    ((.status.containerStatuses // []) | map({key: .name, value: .}) | from_entries) as $st
    | ([.spec.containers[] | containerAction(.; $st[.name])] | min) as $a
    | if $a == 1 or ((.spec.initContainers // []) | length) != ((.status.initContainerStatuses // []) | length) then "start"
      elif $a == 2 then "restart"
      elif $a == 3 then "resize"
      elif $a == 4 then "slowready"
      elif $a == 5 then "pullbackoff"
      elif $a == 6 then "crashloop"
      elif needsSync then "sync"
      else "none" end
  end;

podAction
