package webhook

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// PodSecurityConflicts follows the namespaces that opted in while their enforced Pod
// Security level (baseline or restricted, without a declared exemption) forbids every
// unsafe sysctl: their pods that need sysctl-placement are refused by the API server
// whatever it does. It logs each such namespace once when it becomes one and exports
// how many there are, so an admin finds them before users do. It is a
// namespaces.Watcher.
type PodSecurityConflicts struct {
	mu sync.Mutex
	// levels maps a conflicting namespace to its enforced level ("baseline:latest").
	levels map[string]string
	gauge  prometheus.Gauge
	log    logrus.FieldLogger
}

// NewPodSecurityConflicts registers the gauge
// sysctl_placement_namespaces_pod_security_conflict on reg; a nil log logs nothing.
func NewPodSecurityConflicts(reg prometheus.Registerer, log logrus.FieldLogger) (*PodSecurityConflicts, error) {
	if log == nil {
		log = discardLogger()
	}
	c := &PodSecurityConflicts{
		levels: map[string]string{},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_namespaces_pod_security_conflict",
			Help: "Namespaces that opted in while enforcing the Pod Security level baseline or restricted (and declare no exemption): the API server refuses their pods with unsafe sysctls.",
		}),
		log: log,
	}
	if err := reg.Register(c.gauge); err != nil {
		return nil, err
	}
	return c, nil
}

// NamespaceChanged implements namespaces.Watcher.
func (c *PodSecurityConflicts) NamespaceChanged(ns scheduling.Namespace) {
	level, conflict := scheduling.PodSecurityOf(ns).EnforcedSysctlRestriction()
	conflict = conflict && ns.OptedIn()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !conflict {
		c.forget(ns.Name)
		return
	}
	if c.levels[ns.Name] == level.String() {
		return
	}
	c.levels[ns.Name] = level.String()
	c.gauge.Set(float64(len(c.levels)))
	c.log.WithFields(logrus.Fields{"namespace": ns.Name, "podSecurity": level.String()}).Warn(
		"namespace opted in to sysctl-placement but enforces Pod Security " + level.String() +
			", which forbids every unsafe sysctl: its pods asking for one are refused; label it " +
			scheduling.LabelPodSecurityEnforce + "=privileged, or exempt it in the PSA configuration and annotate it " +
			scheduling.AnnotationPodSecurityExempt + "=true")
}

// NamespaceDeleted implements namespaces.Watcher.
func (c *PodSecurityConflicts) NamespaceDeleted(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forget(name)
}

func (c *PodSecurityConflicts) forget(name string) {
	if _, ok := c.levels[name]; ok {
		delete(c.levels, name)
		c.gauge.Set(float64(len(c.levels)))
	}
}
