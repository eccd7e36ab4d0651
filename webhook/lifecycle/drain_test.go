package lifecycle

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestDrainingResponsesCloseTheConnection(t *testing.T) {
	var draining atomic.Bool
	srv := httptest.NewServer(closeWhenDraining(&draining, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()

	get := func() *http.Response {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if err := resp.Body.Close(); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := get(); resp.Close {
		t.Fatalf("a response before draining asked to close the connection")
	}
	draining.Store(true)
	if resp := get(); !resp.Close {
		t.Fatalf("a response while draining did not ask to close the connection: %v", resp.Header)
	}
}

func TestDrainWaitsForTheDelayOrAServerError(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	log.Logger.Out = io.Discard
	var draining atomic.Bool
	errs := make(chan error, 1)
	start := time.Now()
	drain(&draining, 50*time.Millisecond, errs, log)
	if !draining.Load() {
		t.Fatal("drain did not set draining")
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("drain returned before the delay")
	}
	errs <- io.ErrUnexpectedEOF
	done := make(chan struct{})
	go func() { drain(&draining, time.Hour, errs, log); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not return on a server error")
	}
}
