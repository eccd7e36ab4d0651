// Package auditevents records the Events (events.k8s.io/v1) that tell users what
// sysctl-placement did: on the Pod once it exists (SysctlPlaced, HostNamespaceStripped,
// SysctlsDropped, HostNamespaceConflict), and on the owning workload when a controller's
// pod is denied (SysctlUnplaceable, HostNamespaceConflict) or a workload's pod template
// is changed on UPDATE (HostNamespaceStripped, SysctlsDropped).
//
// # Pod Events: exactly one per pod and reason
//
// At admission a generated pod has no name or UID, so pod Events come from a
// Controller that watches only pods labelled sysctl-placement.io/placed=true and reads
// their sysctl-placement.io/placement audit annotation. Exactly one Event per pod and
// reason, with any number of replicas and across restarts, rests on three things:
//
//   - The Event's name is deterministic: the pod's name and a hash of the pod's UID and
//     the reason (EventName). The API server creates a name once; a second create —
//     from a new leader re-listing pods, a second replica that still thinks it leads,
//     or a retry after a lost response — gets AlreadyExists, which counts as done.
//     This needs only `create` on events, which the webhook already has.
//   - Leader election (a Lease in the webhook's namespace) keeps one replica doing the
//     work; it is an optimisation, not what makes the count exact.
//   - Events expire (kube-apiserver --event-ttl, one hour by default), after which a
//     name could be created again. The controller therefore ignores pods older than
//     MaxPodAge (30 minutes by default), which must stay below the event TTL: an Event
//     is created no earlier than its pod, so while the pod is young enough to be
//     considered, its Event, if one was created, still exists.
//
// Rejected alternatives: marking the pod with an annotation needs pods/patch and
// writes to every user's pod; listing existing Events needs events list/watch and
// still misses Events a crashed leader had in flight; comparing creation time with
// the time leadership was acquired loses the pods created during a hand-over or
// records them twice, depending on the margin.
//
// # Workload Events: at most one per workload and reason per interval
//
// Denials and template changes are seen on the admission path of whichever replica got
// the request, and nothing about them is stored in the cluster, so every replica
// records its own (not only the leader). The Recorder is told through
// webhook.WorkloadObserver, never blocks: it drops (and counts) when its bounded queue
// is full. A ReplicaSet that keeps failing to create pods is reported once per
// WorkloadInterval per replica, and the Event name carries the interval's number, so
// replicas that saw the same denial in the same interval create one Event between them.
//
// # Tenants cannot cost us memory or one another's Events
//
// Whoever may create a pod may label it placed and give it 256 KiB of annotations, and
// chooses its ownerReferences. So the Controller lists (a page of 16 at a time) and
// watches only metadata and keeps a few hundred bytes per pod, drops a placement
// annotation larger than any the webhook writes before reading the pod, and records a
// pod's Events only when its spec carries every change the annotation claims
// (admitted.go). Every namespace pays from a token bucket of its own: placed pods wait
// for their namespace's turn (or are dropped when it would come too late), and workload
// Events beyond the budget are dropped; workloads are de-duplicated per namespace.
//
// client-go's EventBroadcaster is not used to write: it names Events by timestamp (no
// cross-replica or restart deduplication), starts one goroutine per Event that retries
// for two minutes (unbounded while the API server is down), and gives no result to
// count or retry on. Its series aggregation is replaced by the per-interval
// deduplication above. Events are written through its EventSink interface.
package auditevents
