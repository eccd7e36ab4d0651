package scheduling

import corev1 "k8s.io/api/core/v1"

// SysctlNames lists the sysctls a pod asks for, as written, in order: what Events,
// reports and tables show of a pod.
func SysctlNames(pod *corev1.Pod) []string {
	if pod.Spec.SecurityContext == nil {
		return nil
	}
	names := make([]string, 0, len(pod.Spec.SecurityContext.Sysctls))
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		names = append(names, s.Name)
	}
	return names
}
