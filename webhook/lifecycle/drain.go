package lifecycle

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// drain is the phase between SIGTERM and closing the listener: /readyz fails so the
// replica leaves the load balancer's endpoints, while requests still arriving (sent
// before the endpoints changed) are answered, each with Connection: close so the client
// reconnects through the load balancer. Idle connections are left alone until
// Shutdown: closing them now could race with a request the client is sending on one.
func drain(draining *atomic.Bool, delay time.Duration, errs <-chan error, log *logrus.Entry) {
	draining.Store(true)
	log.WithField("shutdownDelay", delay.String()).Info("draining: /readyz answers 503 until the listener closes")
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case err := <-errs:
		log.WithError(err).Error("a server failed while draining")
	}
}

// closeWhenDraining asks the client to close the connection after the response once
// draining is set; net/http then closes it after writing the response.
func closeWhenDraining(draining *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
