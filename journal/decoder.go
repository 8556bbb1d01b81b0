package journal

import "sync"

// shared interns the strings and small maps of the bodies DecodeBody
// reads on its fast path, for the whole process: a fleet's pods carry the
// same labels, images, node names, condition types, requests and limits,
// and a fold that keeps every pod's last Observed (and ingest's known set)
// then keeps one copy of each instead of one per pod. A decode that finds
// it busy reads without it rather than wait: interning changes what is
// shared, never what is read.
//
// NB: so two decoded values may share a map or an OwnerRef: a caller that
// changes one of a decoded value must copy it first (the planner's dry run
// does).
var shared struct {
	mu sync.Mutex
	in interner
}

// fastBody is DecodeBody's fast path for the hot body types; ok is false
// when v is another type or b is not canonical (v is then zero).
func fastBody(b []byte, v any) (ok bool) {
	r := canonReader{b: b}
	switch v.(type) {
	case *Observed, *ActionFact:
	default:
		return false
	}
	if shared.mu.TryLock() {
		defer shared.mu.Unlock()
		r.in = &shared.in
	}
	switch v := v.(type) {
	case *Observed:
		if readObserved(&r, v) {
			return true
		}
		*v = Observed{}
	case *ActionFact:
		if readActionFact(&r, v) {
			return true
		}
		*v = ActionFact{}
	}
	return false
}

// fastObserved is fastBody for an Observed, typed: through fastBody's
// any, DecodeObserved's o would escape to the heap.
func fastObserved(b []byte, o *Observed) bool {
	r := canonReader{b: b}
	if shared.mu.TryLock() {
		defer shared.mu.Unlock()
		r.in = &shared.in
	}
	return readObserved(&r, o)
}

// readObserved reads an Observed of a pod, a rollout or anything else
// without workload, node or revision facts (those are rare: decMode reads
// them). o must be zero.
func readObserved(r *canonReader, o *Observed) bool {
	*o = Observed{}
	r.keys(func(k uint64) bool {
		switch k {
		case 1:
			o.Resource = r.text()
		case 2:
			o.Namespace = r.text()
		case 3:
			o.Name = r.text()
		case 4:
			o.UID = r.text()
		case 5:
			o.ResourceVersion = r.text()
		case 6:
			o.Generation = r.int64()
		case 7:
			o.Labels = r.stringMap()
		case 8:
			o.Annotations = r.stringMap()
		case 9:
			o.Owner = r.owner()
		case 10:
			o.Created = r.int64()
		case 11:
			o.Deleting = r.int64()
		case 12:
			o.ObjectHash = r.bytes()
		case 20:
			o.Pod = &PodFacts{}
			readPodFacts(r, o.Pod)
		case 23:
			o.Spec = r.bytes()
		case 24:
			o.Status = r.bytes()
		case 25:
			o.Deleted = r.bool()
		case 26:
			o.HasAnnotations = r.bool()
		case 27:
			o.AnnotationKeys = r.strings()
		case 29:
			o.Truncated = r.text()
		default:
			return false
		}
		return true
	})
	r.end()
	return !r.bad
}

// owner reads an owner reference; with an interner, one encoded exactly
// as one read before is that same OwnerRef (every pod of a StatefulSet or
// DaemonSet names the same owner).
func (r *canonReader) owner() *OwnerRef {
	start := r.off
	o := &OwnerRef{}
	readOwner(r, o)
	if r.in == nil || r.bad {
		return o
	}
	return r.in.shareOwner(r.b[start:r.off], o)
}

func readOwner(r *canonReader, o *OwnerRef) {
	r.keys(func(k uint64) bool {
		switch k {
		case 1:
			o.APIVersion = r.text()
		case 2:
			o.Kind = r.text()
		case 3:
			o.Name = r.text()
		case 4:
			o.UID = r.text()
		default:
			return false
		}
		return true
	})
}

func readPodFacts(r *canonReader, p *PodFacts) {
	r.keys(func(k uint64) bool {
		switch k {
		case 1:
			p.NodeName = r.text()
		case 2:
			p.Phase = r.text()
		case 3:
			p.PodIP = r.text()
		case 4:
			p.ReadinessGates = r.strings()
		case 5:
			n := r.count(majArray)
			if r.bad {
				return false
			}
			p.Conditions = make([]Condition, n)
			for i := range p.Conditions {
				readCondition(r, &p.Conditions[i])
			}
		case 6:
			p.Containers = readContainers(r)
		case 7:
			p.InitContainers = readContainers(r)
		case 8:
			p.QOSClass = r.text()
		case 9:
			p.EnvFieldRefs = r.strings()
		case 10:
			r.bytes() // Dropped
		default:
			return false
		}
		return true
	})
}

func readCondition(r *canonReader, c *Condition) {
	r.keys(func(k uint64) bool {
		switch k {
		case 1:
			c.Type = r.text()
		case 2:
			c.Status = r.text()
		case 3:
			c.Reason = r.text()
		case 4:
			c.Message = r.text()
		case 5:
			c.LastTransition = r.int64()
		default:
			return false
		}
		return true
	})
}

func readContainers(r *canonReader) []Container {
	n := r.count(majArray)
	if r.bad {
		return nil
	}
	out := make([]Container, n)
	for i := range out {
		readContainer(r, &out[i])
	}
	return out
}

func readContainer(r *canonReader, c *Container) {
	r.keys(func(k uint64) bool {
		switch k {
		case 1:
			c.Name = r.text()
		case 2:
			c.Image = r.text()
		case 3:
			c.ImageID = r.text()
		case 4:
			c.ContainerID = r.text()
		case 5:
			c.RestartCount = r.int32()
		case 6:
			c.Ready = r.bool()
		case 7:
			c.Started = r.bool()
		case 8:
			c.State = r.text()
		case 9:
			c.StatusImage = r.text()
		case 10:
			c.Requests = r.stringMap()
		case 11:
			c.Limits = r.stringMap()
		case 12:
			c.ActualRequests = r.stringMap()
		case 13:
			c.ActualLimits = r.stringMap()
		case 14:
			r.bytes() // Dropped
		case 15:
			c.RestartAlways = r.bool()
		default:
			return false
		}
		return true
	})
}

func readActionFact(r *canonReader, f *ActionFact) bool {
	*f = ActionFact{}
	r.keys(func(k uint64) bool {
		switch k {
		case 1:
			f.Key = r.text()
		case 2:
			f.Kind = r.text()
		case 3:
			f.Rollout = r.text()
		case 4:
			f.Pod = r.text()
		case 5:
			f.UID = r.text()
		case 6:
			f.Revision = r.text()
		case 7:
			f.Action = r.bytes()
		case 8:
			f.PlanSeq = r.uint()
		case 9:
			f.ResultVersion = r.text()
		case 10:
			f.Error = r.text()
		case 11:
			f.Class = r.text()
		case 12:
			v := r.int64()
			if int64(int(v)) != v {
				r.bad = true
			}
			f.Attempt = int(v)
		case 13:
			f.TraceParent = r.text()
		case 15:
			v := r.int64()
			if int64(int(v)) != v {
				r.bad = true
			}
			f.PlanActions = int(v)
		default:
			return false
		}
		return true
	})
	r.end()
	return !r.bad
}
