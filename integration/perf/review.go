package perf

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// DeploymentPod is a pod as the ReplicaSet controller creates it for a Deployment:
// generateName and an ownerReference, the template's labels, the two IPC sysctls
// PostgreSQL asks for, and one container with ports, env and a volume. It is the
// same pod as webhook/bench_test.go's, so in-process and over-the-wire figures
// describe the same admission.
func DeploymentPod(namespace string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "postgres-7d9f8c6b5-",
			Namespace:    namespace,
			Labels:       map[string]string{"app": "postgres", "pod-template-hash": "7d9f8c6b5"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "postgres-7d9f8c6b5",
				UID: "5b1e6f3a-8c2d-4e7f-9a1b-2c3d4e5f6a7b", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
				{Name: "kernel.shmmax", Value: "68719476736"},
				{Name: "kernel.sem", Value: "250 32000 100 128"},
			}},
			Containers: []corev1.Container{{
				Name:  "postgres",
				Image: "postgres:17",
				Ports: []corev1.ContainerPort{{Name: "postgres", ContainerPort: 5432, Protocol: corev1.ProtocolTCP}},
				Env: []corev1.EnvVar{
					{Name: "POSTGRES_DB", Value: "shop"},
					{Name: "PGDATA", Value: "/var/lib/postgresql/data/pgdata"},
					{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "postgres"}, Key: "password",
					}}},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
				},
				VolumeMounts:             []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}},
				TerminationMessagePath:   "/dev/termination-log",
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
				ImagePullPolicy:          corev1.PullIfNotPresent,
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("10Gi"))},
			}}},
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			DNSPolicy:                     corev1.DNSClusterFirst,
			SchedulerName:                 "default-scheduler",
			EnableServiceLinks:            ptr.To(true),
			PreemptionPolicy:              ptr.To(corev1.PreemptLowerPriority),
			Priority:                      ptr.To[int32](0),
		},
	}
}

// Review is one encoded AdmissionReview request and the UID its response must echo.
type Review struct {
	UID  types.UID
	Body []byte
}

// CreateReviews encodes n AdmissionReview requests (admission.k8s.io/v1, CREATE) for
// DeploymentPod in namespace, each with its own UID so that a response can be matched
// to its request.
func CreateReviews(namespace string, n int) ([]Review, error) {
	if n <= 0 {
		return nil, fmt.Errorf("the number of reviews must be positive, got %d", n)
	}
	raw, err := json.Marshal(DeploymentPod(namespace))
	if err != nil {
		return nil, fmt.Errorf("could not encode the benchmark pod: %w", err)
	}
	reviews := make([]Review, n)
	for i := range reviews {
		uid := types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
		ar := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:             uid,
				Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace:       namespace,
				Operation:       admissionv1.Create,
				UserInfo:        authUser(),
				Object:          runtime.RawExtension{Raw: raw},
				DryRun:          ptr.To(false),
				Options:         runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
			},
		}
		if reviews[i].Body, err = json.Marshal(ar); err != nil {
			return nil, fmt.Errorf("could not encode an AdmissionReview: %w", err)
		}
		reviews[i].UID = uid
	}
	return reviews, nil
}

// authUser is who creates a Deployment's pods: the ReplicaSet controller.
func authUser() authenticationv1.UserInfo {
	return authenticationv1.UserInfo{
		Username: "system:serviceaccount:kube-system:replicaset-controller",
		UID:      "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
	}
}
