package cluster

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	"k8s.io/kubernetes/pkg/kubelet/sysctl"
)

// kubelet simulates the kubelets of one pool. For each node it watches the pods bound
// there (field selector spec.nodeName=<node>, like a kubelet) and decides admission
// with the kubelet's own sysctl admit handler, built the way kubelet.go builds it:
// NewAllowlist(safe sysctls for the node's kernel + allowedUnsafeSysctls). A rejected
// pod gets the status and Warning Event that Kubelet.rejectPod writes; an admitted
// one is reported Running with every container started and ready. Pods being deleted
// are removed at once, as a kubelet does once their containers have stopped.
//
// Only sysctl admission is simulated: no resource fit, node affinity or taint checks
// (the scheduler has made those), no containers, no probes.
type kubelet struct {
	client    kubernetes.Interface
	pool      *Pool
	allowlist lifecycle.PodAdmitHandler

	// mu guards allowlist (RestartPoolKubelets replaces it) and configz, the nodes'
	// /configz servers when the pool serves them (configz.go).
	mu      sync.Mutex
	configz map[string]*configzServer

	cancel      context.CancelFunc
	factories   []informers.SharedInformerFactory
	broadcaster record.EventBroadcaster
}

func startKubelet(ctx context.Context, client kubernetes.Interface, pool *Pool) (*kubelet, error) {
	safe, err := safeSysctlsForKernel(ctx, pool.Spec.KernelVersion)
	if err != nil {
		return nil, err
	}
	allowlist, err := sysctl.NewAllowlist(append(safe, pool.Spec.AllowedUnsafeSysctls...))
	if err != nil {
		return nil, fmt.Errorf("kubelet would not start: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	k := &kubelet{
		client:      client,
		pool:        pool,
		allowlist:   allowlist,
		cancel:      cancel,
		broadcaster: record.NewBroadcaster(record.WithContext(runCtx)),
	}
	k.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})

	var synced []cache.InformerSynced
	for _, node := range pool.NodeNames {
		factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
			}))
		pods := factory.Core().V1().Pods().Informer()
		recorder := k.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: node})
		handle := func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				k.sync(runCtx, recorder, pod)
			}
		}
		if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    handle,
			UpdateFunc: func(_, obj any) { handle(obj) },
		}); err != nil {
			k.stop()
			return nil, err
		}
		factory.Start(runCtx.Done())
		k.factories = append(k.factories, factory)
		synced = append(synced, pods.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		k.stop()
		return nil, fmt.Errorf("the simulated kubelet's pod watch did not sync: %w", ctx.Err())
	}
	return k, nil
}

func (k *kubelet) stop() {
	k.stopConfigz()
	k.cancel()
	for _, f := range k.factories {
		f.Shutdown()
	}
	k.broadcaster.Shutdown()
}

// sync is the kubelet's reaction to a pod it sees bound to one of its nodes.
func (k *kubelet) sync(ctx context.Context, recorder record.EventRecorder, pod *corev1.Pod) {
	switch {
	case pod.DeletionTimestamp != nil:
		k.remove(ctx, pod)
	case pod.Status.Phase == "" || pod.Status.Phase == corev1.PodPending:
		k.admit(ctx, recorder, pod)
	}
}

func (k *kubelet) admit(ctx context.Context, recorder record.EventRecorder, pod *corev1.Pod) {
	result := k.admitHandler().Admit(ctx, &lifecycle.PodAdmitAttributes{Pod: pod, Operation: lifecycle.AddOperation})
	if !result.Admit {
		// Kubelet.rejectPod: a Warning Event and a terminal status.
		recorder.Eventf(pod, corev1.EventTypeWarning, result.Reason, "%s", result.Message)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if current.UID != pod.UID || current.DeletionTimestamp != nil ||
			(current.Status.Phase != "" && current.Status.Phase != corev1.PodPending) {
			return nil // replaced, going away, or already decided
		}
		if result.Admit {
			current.Status = runningStatus(current)
		} else {
			current.Status = rejectedStatus(current, result.Reason, result.Message)
		}
		_, err = k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, current, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		// Like a kubelet, keep going; the next update of the pod retries.
		klog.FromContext(ctx).Error(err, "simulated kubelet could not update a pod's status", "pool", k.pool.Spec.Name, "pod", klog.KObj(pod))
	}
}

// remove finishes a graceful deletion: a kubelet deletes the pod with grace period
// zero once its containers have stopped, and the simulated ones never run.
func (k *kubelet) remove(ctx context.Context, pod *corev1.Pod) {
	err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		klog.FromContext(ctx).Error(err, "simulated kubelet could not delete a pod", "pool", k.pool.Spec.Name, "pod", klog.KObj(pod))
	}
}

// rejectedStatus is the status Kubelet.rejectPod sets; conditions owned by others
// (PodScheduled) are kept, as the kubelet's status manager keeps them.
func rejectedStatus(pod *corev1.Pod, reason, message string) corev1.PodStatus {
	now := metav1.Now()
	return corev1.PodStatus{
		Phase:      corev1.PodFailed,
		Reason:     reason,
		Message:    "Pod was rejected: " + message,
		QOSClass:   pod.Status.QOSClass,
		Conditions: pod.Status.Conditions,
		StartTime:  &now,
	}
}

// runningStatus is what a kubelet reports once every container has started and
// passed its (absent) readiness probe.
func runningStatus(pod *corev1.Pod) corev1.PodStatus {
	now := metav1.Now()
	status := *pod.Status.DeepCopy()
	status.Phase = corev1.PodRunning
	status.StartTime = &now
	for _, t := range []corev1.PodConditionType{
		corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
	} {
		setCondition(&status, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	started := true
	status.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		cs := corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     "simulated://" + c.Image,
			ContainerID: fmt.Sprintf("simulated://%s/%s", pod.UID, c.Name),
		}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			cs.Ready, cs.Started = true, &started // a sidecar keeps running
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		} else {
			cs.State.Terminated = &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: now, FinishedAt: now}
		}
		status.InitContainerStatuses = append(status.InitContainerStatuses, cs)
	}
	status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		status.ContainerStatuses = append(status.ContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     "simulated://" + c.Image,
			ContainerID: fmt.Sprintf("simulated://%s/%s", pod.UID, c.Name),
			Ready:       true,
			Started:     &started,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return status
}

func setCondition(status *corev1.PodStatus, c corev1.PodCondition) {
	for i := range status.Conditions {
		if status.Conditions[i].Type == c.Type {
			status.Conditions[i] = c
			return
		}
	}
	status.Conditions = append(status.Conditions, c)
}
