package main

import (
	"errors"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	admissionregistrationv1 "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
	appsv1 "k8s.io/client-go/kubernetes/typed/apps/v1"
	batchv1 "k8s.io/client-go/kubernetes/typed/batch/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	eventsv1 "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// kubeClient is a kubernetes.Interface with a client for each API group
// sysctl-placement calls, and only those. kubernetes.NewForConfig builds one for every
// group of the API, which links every typed client of client-go into the binary: 13 MB
// of the binary (and as much of each replica's resident memory, its text being paged
// in) for groups nothing here reads. The packages take kubernetes.Interface, so tests
// pass client-go's fake clientset. Any other group's method is not implemented: calling
// one panics (the nil kubernetes.Interface embedded), which TestKubeClientServesEveryGroupWeCall
// and the end-to-end tests would show.
type kubeClient struct {
	kubernetes.Interface

	core                  *corev1.CoreV1Client
	coordination          *coordinationv1.CoordinationV1Client
	events                *eventsv1.EventsV1Client
	admissionregistration *admissionregistrationv1.AdmissionregistrationV1Client
	apps                  *appsv1.AppsV1Client
	batch                 *batchv1.BatchV1Client
	// discovery reads the API server's version (the policy backend's gate).
	discovery *discovery.DiscoveryClient
}

// newKubeClient builds the group clients as kubernetes.NewForConfig builds its own:
// on one HTTP client and one rate limiter (--kube-api-qps) for all groups.
func newKubeClient(restConfig *rest.Config) (kubernetes.Interface, error) {
	cfg := rest.CopyConfig(restConfig)
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	h, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	c := &kubeClient{}
	var errs [7]error
	c.core, errs[0] = corev1.NewForConfigAndClient(cfg, h)
	c.coordination, errs[1] = coordinationv1.NewForConfigAndClient(cfg, h)
	c.events, errs[2] = eventsv1.NewForConfigAndClient(cfg, h)
	c.admissionregistration, errs[3] = admissionregistrationv1.NewForConfigAndClient(cfg, h)
	c.apps, errs[4] = appsv1.NewForConfigAndClient(cfg, h)
	c.batch, errs[5] = batchv1.NewForConfigAndClient(cfg, h)
	c.discovery, errs[6] = discovery.NewDiscoveryClientForConfigAndClient(cfg, h)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *kubeClient) CoreV1() corev1.CoreV1Interface                         { return c.core }
func (c *kubeClient) CoordinationV1() coordinationv1.CoordinationV1Interface { return c.coordination }
func (c *kubeClient) EventsV1() eventsv1.EventsV1Interface                   { return c.events }
func (c *kubeClient) AdmissionregistrationV1() admissionregistrationv1.AdmissionregistrationV1Interface {
	return c.admissionregistration
}
func (c *kubeClient) AppsV1() appsv1.AppsV1Interface    { return c.apps }
func (c *kubeClient) BatchV1() batchv1.BatchV1Interface { return c.batch }

func (c *kubeClient) Discovery() discovery.DiscoveryInterfaces { return c.discovery }
