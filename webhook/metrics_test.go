package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCertificateExpiryGauge(t *testing.T) {
	t.Run("is the NotAfter of the certificate in force", func(t *testing.T) {
		metrics := NewMetrics(prometheus.NewRegistry())
		notAfter := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
		metrics.ObserveServingCertificate(&tls.Certificate{Leaf: &x509.Certificate{NotAfter: notAfter}})
		if got := testutil.ToFloat64(metrics.certificateExpiry); got != float64(notAfter.Unix()) {
			t.Errorf("sysctl_placement_certificate_expiry_timestamp_seconds = %v, want %v", got, notAfter.Unix())
		}
	})
}
