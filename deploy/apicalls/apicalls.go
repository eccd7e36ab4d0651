// Package apicalls lists every kind of request a sysctl-placement process makes to the
// API server (or, for nodes/configz, to a kubelet, which asks the API server to
// authorize it), with the identity that makes it and the code that makes it. It is the
// one source of the shipped RBAC: deploy's tests hold each identity's roles to exactly
// its rows, and this package's tests hold the rows to the code (every client call in
// the module is covered by a row, and every row's call is still in the code). The
// end-to-end tests run serve with the shipped RBAC and ask the API server, with
// SubjectAccessReviews, about serve's calls (spelled again there: the integration
// module does not import this one).
package apicalls

import (
	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
	"github.com/sysctl-placement/sysctl-placement/webhook/auditevents"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// Identity is who makes a call, and so which shipped RBAC objects must grant it.
type Identity string

const (
	// Serve is `serve` as the ServiceAccount sysctl-placement: the ClusterRole and the
	// Role of deploy/base/rbac.yaml (the chart's rbac.yaml).
	Serve Identity = "serve"
	// ServePolicy is `serve --admission=policy`, the same ServiceAccount: the ClusterRole
	// and the Role of deploy/components/policy-backend/rbac.yaml.
	ServePolicy Identity = "serve --admission=policy"
	// MetricsSecure is `serve --metrics-secure`, the same ServiceAccount: the
	// ClusterRole sysctl-placement-metrics-auth of deploy/components/metrics-secure.
	MetricsSecure Identity = "serve --metrics-secure"
	// Certs is `certs` as the ServiceAccount sysctl-placement-certs: the Role and the
	// ClusterRole of deploy/overlays/self-signed/certs-rbac.yaml.
	Certs Identity = "certs"
	// UninstallWebhooks is `uninstall-webhooks` as the ServiceAccount
	// sysctl-placement-uninstall of the chart's pre-delete hook: the ClusterRole of
	// deploy/charts/sysctl-placement/templates/uninstall-hook.yaml, which deploy/chartcheck
	// holds to delete on the two configurations by name (no kustomize overlay has it).
	UninstallWebhooks Identity = "uninstall-webhooks"
	// UninstallCleanup is `uninstall-cleanup` as the ServiceAccount
	// sysctl-placement-cleanup of the chart's post-delete hook: the Role and the
	// ClusterRole of deploy/charts/sysctl-placement/templates/uninstall-hook.yaml, which
	// deploy/chartcheck holds to delete on the two Secrets and two Leases by name, and
	// get and delete on the six admission policies and bindings by name.
	UninstallCleanup Identity = "uninstall-cleanup"
	// Doctor is whoever runs `doctor`, and the ServiceAccount <fullname>-test of the
	// chart's `helm test` (templates/tests/doctor.yaml, held by deploy/chartcheck to
	// the rows that a --test-namespace run makes: no namespace rights).
	Doctor Identity = "doctor"
	// Audit is whoever runs `audit` or `pools`: the ClusterRole of deploy/audit.
	Audit Identity = "audit"
	// Discovery is the ServiceAccount sysctl-placement-discovery, whose short-lived
	// token serve requests and sends to kubelets: the ClusterRole of
	// deploy/base/discovery-rbac.yaml.
	Discovery Identity = "discovery"
)

// Namespace is where the namespaced rows apply: the webhook's namespace, where the
// Role of each identity lives.
const Namespace = "sysctl-placement"

// Call is one RBAC grant an identity needs, and the code that needs it.
type Call struct {
	Identity Identity
	// Verb, Group, Resource and Subresource are what RBAC checks.
	Verb, Group, Resource, Subresource string
	// Name is the one object the call touches (RBAC resourceNames); empty for a
	// create (RBAC cannot restrict one by name, but for a subresource of a named
	// object) or for every object.
	Name string
	// Namespaced rows are granted by a Role in Namespace; the others by a ClusterRole.
	Namespaced bool
	// Source is the file, from the module root, that makes the call; Call is a
	// fragment of one of its lines that makes it.
	Source, Call string
}

// Grant is the call as deploy's tests spell an RBAC grant: "verb resource[/sub][.group][/name]".
func (c Call) Grant() string {
	s := c.Verb + " " + c.Resource
	if c.Subresource != "" {
		s += "/" + c.Subresource
	}
	if c.Group != "" {
		s += "." + c.Group
	}
	if c.Name != "" {
		s += "/" + c.Name
	}
	return s
}

// Files that make the calls.
const (
	namespaceCache  = "webhook/namespaces/cache.go"
	auditController = "webhook/auditevents/controller.go"
	auditRecorder   = "webhook/auditevents/recorder.go"
	auditLeader     = "webhook/auditevents/leader.go"
	discoveryNodes  = "webhook/discovery/nodes.go"
	discoveryShared = "webhook/discovery/shared.go"
	configz         = "webhook/discovery/configz.go"
	discoveryToken  = "webhook/discovery/token.go"
	delegatedAuth   = "webhook/delegatedauth/filter.go"
	certsCmd        = "cmd/sysctl-placement/certsensure.go"
	caBundle        = "certs/cabundle.go"
	uninstallCmd    = "cmd/sysctl-placement/uninstallwebhooks.go"
	cleanupCmd      = "cmd/sysctl-placement/uninstallcleanup.go"
	doctorCmd       = "cmd/sysctl-placement/internal/doctor/doctor.go"
	auditCmd        = "cmd/sysctl-placement/internal/audit/collect.go"
	poolsLoad       = "webhook/discovery/load.go"
	sharedStatus    = "webhook/discovery/status.go"
	policyStatus    = "webhook/discovery/policystatus.go"
	policySync      = "webhook/policysync/objects.go"
)

// tlsSecret, caSecret and webhookConfigurations are the names `certs` runs with in the
// shipped Job and CronJob.
const (
	tlsSecret             = "sysctl-placement-tls"
	caSecret              = "sysctl-placement-ca"
	webhookConfigurations = "sysctl-placement"
	discoveryAccount      = "sysctl-placement-discovery"
)

// Table is every call, by identity.
var Table = append([]Call{
	// serve: the namespace cache (opt-in and policy annotations), metadata only.
	{Identity: Serve, Verb: "list", Resource: "namespaces", Source: namespaceCache, Call: ".ForResource(namespacesResource)"},
	{Identity: Serve, Verb: "watch", Resource: "namespaces", Source: namespaceCache, Call: ".ForResource(namespacesResource)"},
	// serve: the audit controller lists (a page at a time) and watches placed pods'
	// metadata, then reads each candidate pod by listing it by name.
	{Identity: Serve, Verb: "list", Resource: "pods", Source: auditController, Call: "NewSharedIndexInformer(c.listWatch()"},
	{Identity: Serve, Verb: "watch", Resource: "pods", Source: auditController, Call: "ToListWatcherWithWatchListSemantics("},
	{Identity: Serve, Verb: "list", Resource: "pods", Source: auditController, Call: "pods.List(ctx"},
	{Identity: Serve, Verb: "list", Resource: "pods", Source: auditController, Call: "p.List(ctx"},
	{Identity: Serve, Verb: "watch", Resource: "pods", Source: auditController, Call: "pods.Watch(ctx"},
	{Identity: Serve, Verb: "list", Resource: "pods", Source: auditController, Call: ".Pods(namespace).List(ctx"},
	{Identity: Serve, Verb: "create", Group: "events.k8s.io", Resource: "events", Source: auditRecorder, Call: ".Sink.Create(ctx"},
	// serve: pools' node counts and discovery read Nodes through an informer, and
	// each kubelet's allowlist from /configz (the kubelet authorizes nodes/configz).
	{Identity: Serve, Verb: "list", Resource: "nodes", Source: discoveryNodes, Call: "NewNodeInformer("},
	{Identity: Serve, Verb: "watch", Resource: "nodes", Source: discoveryNodes, Call: "NewNodeInformer("},
	{Identity: Discovery, Verb: "get", Resource: "nodes", Subresource: "configz", Source: configz, Call: `"/configz"`},
	// serve: the discovery account's token, requested by name.
	{Identity: Serve, Verb: "create", Resource: "serviceaccounts", Subresource: "token", Name: discoveryAccount, Namespaced: true, Source: discoveryToken, Call: ".CreateToken(ctx"},
	// serve: the two leader elections. The Lease lock gets, creates (when missing)
	// and updates its Lease; only create cannot be restricted by name.
	{Identity: Serve, Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Name: auditevents.LeaseName, Namespaced: true, Source: auditLeader, Call: "resourcelock.LeaseLock{"},
	{Identity: Serve, Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: auditevents.LeaseName, Namespaced: true, Source: auditLeader, Call: "resourcelock.LeaseLock{"},
	{Identity: Serve, Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Name: discovery.SharedName, Namespaced: true, Source: auditLeader, Call: "resourcelock.LeaseLock{"},
	{Identity: Serve, Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: discovery.SharedName, Namespaced: true, Source: auditLeader, Call: "resourcelock.LeaseLock{"},
	{Identity: Serve, Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespaced: true, Source: auditLeader, Call: "resourcelock.LeaseLock{"},
	// serve: the shared discovery result. The informer lists and watches it by name
	// (a metadata.name field selector, which RBAC authorizes per name); the elected
	// replica updates it. The manifests ship it (deploy/base/discovery-result.yaml):
	// serve never creates it, so it needs no create on ConfigMaps.
	// serve: a replica takes a published result only from the discovery Lease's holder.
	{Identity: Serve, Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Name: discovery.SharedName, Namespaced: true, Source: discoveryShared, Call: ".Leases(cfg.Namespace).Get(ctx"},
	{Identity: Serve, Verb: "list", Resource: "configmaps", Name: discovery.SharedName, Namespaced: true, Source: discoveryShared, Call: "NewFilteredConfigMapInformer("},
	{Identity: Serve, Verb: "watch", Resource: "configmaps", Name: discovery.SharedName, Namespaced: true, Source: discoveryShared, Call: "NewFilteredConfigMapInformer("},
	{Identity: Serve, Verb: "update", Resource: "configmaps", Name: discovery.SharedName, Namespaced: true, Source: discoveryShared, Call: ".ConfigMaps(cfg.Namespace).Update(ctx"},

	// serve --metrics-secure: who a scraper is, and whether it may read the path.
	{Identity: MetricsSecure, Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews", Source: delegatedAuth, Call: ".TokenReviews.Create(ctx"},
	{Identity: MetricsSecure, Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Source: delegatedAuth, Call: ".SubjectAccessReviews.Create(ctx"},

	// certs: the TLS Secret the webhook mounts, the CA Secret nothing mounts, and
	// caBundle of the two webhook configurations.
	{Identity: Certs, Verb: "get", Resource: "secrets", Name: tlsSecret, Namespaced: true, Source: certsCmd, Call: "secrets.Get(ctx"},
	{Identity: Certs, Verb: "get", Resource: "secrets", Name: caSecret, Namespaced: true, Source: certsCmd, Call: "secrets.Get(ctx"},
	{Identity: Certs, Verb: "create", Resource: "secrets", Namespaced: true, Source: certsCmd, Call: "secrets.Create(ctx"},
	{Identity: Certs, Verb: "update", Resource: "secrets", Name: tlsSecret, Namespaced: true, Source: certsCmd, Call: "secrets.Update(ctx"},
	{Identity: Certs, Verb: "update", Resource: "secrets", Name: caSecret, Namespaced: true, Source: certsCmd, Call: "secrets.Update(ctx"},
	{Identity: Certs, Verb: "get", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: webhookConfigurations, Source: caBundle, Call: "mutating.Get(ctx"},
	{Identity: Certs, Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: webhookConfigurations, Source: caBundle, Call: "mutating.Patch(ctx"},
	{Identity: Certs, Verb: "get", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: webhookConfigurations, Source: caBundle, Call: "validating.Get(ctx"},
	{Identity: Certs, Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: webhookConfigurations, Source: caBundle, Call: "validating.Patch(ctx"},

	// uninstall-webhooks (the chart's pre-delete hook): both configurations, by name.
	{Identity: UninstallWebhooks, Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: webhookConfigurations, Source: uninstallCmd, Call: "MutatingWebhookConfigurations().Delete(ctx"},
	{Identity: UninstallWebhooks, Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: webhookConfigurations, Source: uninstallCmd, Call: "ValidatingWebhookConfigurations().Delete(ctx"},

	// uninstall-cleanup (the chart's post-delete hook): what the webhook made at run
	// time, by name.
	{Identity: UninstallCleanup, Verb: "delete", Resource: "secrets", Name: tlsSecret, Namespaced: true, Source: cleanupCmd, Call: "secrets.Delete(ctx"},
	{Identity: UninstallCleanup, Verb: "delete", Resource: "secrets", Name: caSecret, Namespaced: true, Source: cleanupCmd, Call: "secrets.Delete(ctx"},
	{Identity: UninstallCleanup, Verb: "delete", Group: "coordination.k8s.io", Resource: "leases", Name: discovery.SharedName, Namespaced: true, Source: cleanupCmd, Call: "leases.Delete(ctx"},
	{Identity: UninstallCleanup, Verb: "delete", Group: "coordination.k8s.io", Resource: "leases", Name: auditevents.LeaseName, Namespaced: true, Source: cleanupCmd, Call: "leases.Delete(ctx"},
	// uninstall-cleanup --admission-policies: policyCleanupCalls, below.

	// doctor: both configurations by name, a scratch namespace (unless given one), and
	// the test pod, created with dryRun=All.
	{Identity: Doctor, Verb: "get", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: webhookConfigurations, Source: doctorCmd, Call: "MutatingWebhookConfigurations().Get(ctx"},
	{Identity: Doctor, Verb: "get", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: webhookConfigurations, Source: doctorCmd, Call: "ValidatingWebhookConfigurations().Get(ctx"},
	{Identity: Doctor, Verb: "create", Resource: "namespaces", Source: doctorCmd, Call: "Namespaces().Create(ctx"},
	{Identity: Doctor, Verb: "delete", Resource: "namespaces", Source: doctorCmd, Call: "Namespaces().Delete(ctx"},
	{Identity: Doctor, Verb: "create", Resource: "pods", Source: doctorCmd, Call: "Pods(namespace).Create(ctx"},

	// audit and pools, as the user who runs them: read-only.
	{Identity: Audit, Verb: "get", Resource: "namespaces", Source: auditCmd, Call: "Namespaces().Get(ctx"},
	{Identity: Audit, Verb: "list", Resource: "namespaces", Source: auditCmd, Call: "Namespaces().List(ctx"},
	{Identity: Audit, Verb: "list", Resource: "nodes", Source: auditCmd, Call: "Nodes().List(ctx"},
	{Identity: Audit, Verb: "list", Resource: "nodes", Source: poolsLoad, Call: "Nodes().List(ctx"},
	{Identity: Audit, Verb: "list", Resource: "nodes", Source: discoveryNodes, Call: "NewNodeInformer("},
	{Identity: Audit, Verb: "watch", Resource: "nodes", Source: discoveryNodes, Call: "NewNodeInformer("},
	{Identity: Audit, Verb: "get", Resource: "nodes", Subresource: "configz", Source: configz, Call: `"/configz"`},
	{Identity: Audit, Verb: "list", Resource: "pods", Source: auditCmd, Call: "Pods(ns).List(ctx"},
	// pools: the published discovery result and who holds its Lease, by name.
	{Identity: Audit, Verb: "get", Resource: "configmaps", Name: discovery.SharedName, Source: sharedStatus, Call: "ConfigMaps(namespace).Get(ctx"},
	{Identity: Audit, Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Name: discovery.SharedName, Source: discoveryShared, Call: ".Leases(cfg.Namespace).Get(ctx"},
	{Identity: Audit, Verb: "list", Resource: "replicationcontrollers", Source: auditCmd, Call: "ReplicationControllers(ns).List(ctx"},
	{Identity: Audit, Verb: "list", Resource: "events", Source: auditCmd, Call: "Events(ns).List(ctx"},
	{Identity: Audit, Verb: "list", Group: "apps", Resource: "deployments", Source: auditCmd, Call: "Deployments(ns).List(ctx"},
	{Identity: Audit, Verb: "list", Group: "apps", Resource: "replicasets", Source: auditCmd, Call: "ReplicaSets(ns).List(ctx"},
	{Identity: Audit, Verb: "list", Group: "apps", Resource: "statefulsets", Source: auditCmd, Call: "StatefulSets(ns).List(ctx"},
	{Identity: Audit, Verb: "list", Group: "apps", Resource: "daemonsets", Source: auditCmd, Call: "DaemonSets(ns).List(ctx"},
	{Identity: Audit, Verb: "list", Group: "batch", Resource: "jobs", Source: auditCmd, Call: "Jobs(ns).List(ctx"},
	{Identity: Audit, Verb: "list", Group: "batch", Resource: "cronjobs", Source: auditCmd, Call: "CronJobs(ns).List(ctx"},
}, append(policyCalls(), policyCleanupCalls()...)...)

// Of returns the rows of identity, namespaced ones or the others.
func Of(identity Identity, namespaced bool) []Call {
	var out []Call
	for _, c := range Table {
		if c.Identity == identity && c.Namespaced == namespaced {
			out = append(out, c)
		}
	}
	return out
}

// policyCalls are serve --admission=policy's: server-side apply of the admission
// policies and bindings (patch by name, and create, which RBAC cannot restrict by name,
// for the first apply), get to check their generation and type-checking, delete when
// they are refused; and its status beside the discovery result.
func policyCalls() []Call {
	const group = "admissionregistration.k8s.io"
	named := map[string][]string{
		"mutatingadmissionpolicies":         {policy.Name},
		"mutatingadmissionpolicybindings":   {policy.Name},
		"validatingadmissionpolicies":       {policy.Name, policy.NameWarnings},
		"validatingadmissionpolicybindings": {policy.Name, policy.NameWarnings},
	}
	var out []Call
	for _, resource := range []string{"mutatingadmissionpolicies", "mutatingadmissionpolicybindings", "validatingadmissionpolicies", "validatingadmissionpolicybindings"} {
		out = append(out, Call{Identity: ServePolicy, Verb: "create", Group: group, Resource: resource, Source: policySync, Call: "c.Patch(ctx"})
		for _, name := range named[resource] {
			out = append(out,
				Call{Identity: ServePolicy, Verb: "patch", Group: group, Resource: resource, Name: name, Source: policySync, Call: "c.Patch(ctx"},
				Call{Identity: ServePolicy, Verb: "get", Group: group, Resource: resource, Name: name, Source: policySync, Call: "c.Get(ctx"},
				Call{Identity: ServePolicy, Verb: "delete", Group: group, Resource: resource, Name: name, Source: policySync, Call: "c.Delete(ctx"},
			)
		}
	}
	return append(out, Call{Identity: ServePolicy, Verb: "patch", Resource: "configmaps", Name: discovery.SharedName, Namespaced: true, Source: policyStatus, Call: ".ConfigMaps(namespace).Patch(ctx"})
}

// policyCleanupCalls are uninstall-cleanup --admission-policies': get and delete of
// each of the policy backend's objects by name (policysync.Remove, through the same
// typed clients as the sync).
func policyCleanupCalls() []Call {
	var out []Call
	for _, c := range policyCalls() {
		if c.Verb == "get" || c.Verb == "delete" {
			c.Identity = UninstallCleanup
			out = append(out, c)
		}
	}
	return out
}
