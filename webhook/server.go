package webhook

import (
	"crypto/tls"
	"log"
	"net/http"
	"time"
)

// ServerLimits bound what one client can hold on a listener: time to send its
// headers and body, time an idle connection stays open, header size, and HTTP/2
// streams per connection. Every listener of serve (admission and metrics) gets them.
type ServerLimits struct {
	// ReadHeaderTimeout bounds the TLS handshake and the request headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the whole request, body included: a client that sends its
	// body slowly is cut off, and what it held is freed.
	ReadTimeout time.Duration
	// WriteTimeout bounds the response; 0 means none.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers (answered 431 beyond).
	MaxHeaderBytes int
	// MaxConcurrentStreams bounds the HTTP/2 requests in progress on one
	// connection; the API server's client opens another connection beyond it.
	MaxConcurrentStreams int
}

// AdmissionServerLimits are the limits of the admission listener. The API server
// sends a whole AdmissionReview at once and waits at most 30 s (the largest
// timeoutSeconds) for the answer; 64 KiB of headers is far beyond what it sends
// (a few hundred bytes) and below net/http's 1 MiB default. 100 streams is the
// lowest limit RFC 9113 recommends (Go's default is 250): AdmissionLimit, not the
// streams, bounds the reviews at once.
func AdmissionServerLimits() ServerLimits {
	return ServerLimits{
		ReadHeaderTimeout:    5 * time.Second,
		ReadTimeout:          15 * time.Second,
		WriteTimeout:         15 * time.Second,
		IdleTimeout:          90 * time.Second,
		MaxHeaderBytes:       64 << 10,
		MaxConcurrentStreams: 100,
	}
}

// OpsServerLimits are the limits of the metrics listener (/healthz, /readyz,
// /metrics, pprof): those of the admission listener, but a minute to write, as a CPU
// profile takes 30 s by default (pprof refuses a longer one with a clear message).
func OpsServerLimits() ServerLimits {
	l := AdmissionServerLimits()
	l.WriteTimeout = time.Minute
	return l
}

// NewServer returns an http.Server for handler with the limits l; tlsConfig may be
// nil (plain HTTP) and errorLog receives net/http's own messages.
func NewServer(handler http.Handler, tlsConfig *tls.Config, l ServerLimits, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: l.MaxConcurrentStreams},
		ErrorLog:          errorLog,
	}
}
