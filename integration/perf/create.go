package perf

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// AnnotationEnabled opts a namespace in (scheduling.AnnotationEnabled; the integration
// module spells it out so a rename there is caught here).
const AnnotationEnabled = "sysctl-placement.io/enabled"

// Parallel calls fn(i) for i in [0, n) on workers goroutines and returns the first
// error; after one, no new call starts.
func Parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	items := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range items {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case items <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(items)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// CreateNamespaces creates n namespaces like a multi-tenant cluster's: team and
// environment labels, the kubectl last-applied annotation, and one in ten opted in.
func CreateNamespaces(ctx context.Context, cs kubernetes.Interface, n int) error {
	return Parallel(ctx, n, 16, func(i int) error {
		name := fmt.Sprintf("perf-ns-%05d", i)
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"team": fmt.Sprintf("team-%02d", i%50), "environment": []string{"dev", "staging", "prod"}[i%3]},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": fmt.Sprintf(
				`{"apiVersion":"v1","kind":"Namespace","metadata":{"annotations":{},"labels":{"environment":"%s","team":"team-%02d"},"name":"%s"}}`,
				[]string{"dev", "staging", "prod"}[i%3], i%50, name)},
		}}
		if i%10 == 0 {
			ns.Annotations[AnnotationEnabled] = "true"
		}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("could not create namespace %s: %w", name, err)
		}
		return nil
	})
}

// CreateOptedInNamespace creates the namespace a load's pods are reviewed in, opted
// in by AnnotationEnabled; one that already exists is kept.
func CreateOptedInNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Annotations: map[string]string{AnnotationEnabled: "true"},
	}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("could not create the opted-in namespace %s: %w", name, err)
	}
	return nil
}

// servingCerts writes serve's certificates for 127.0.0.1 into dir
// (cluster.WriteCerts) and returns a pool of their CA, for the load's clients.
func servingCerts(ctx context.Context, bin, dir string) (*x509.CertPool, error) {
	if err := cluster.WriteCerts(ctx, bin, dir, "127.0.0.1"); err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", filepath.Join(dir, "ca.crt"))
	}
	return roots, nil
}
