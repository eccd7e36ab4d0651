package webhook

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// startLimitedServer serves handler over TLS (HTTP/1.1 and HTTP/2) with NewServer's
// server and the limits l; the TLS client config trusts it.
func startLimitedServer(t *testing.T, l ServerLimits) (addr string, clientTLS *tls.Config) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), nil, l, nil)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String(), ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

func TestNewServerEnforcesItsLimits(t *testing.T) {
	limits := ServerLimits{
		ReadHeaderTimeout:    time.Second,
		ReadTimeout:          200 * time.Millisecond,
		IdleTimeout:          time.Second,
		MaxHeaderBytes:       4 << 10,
		MaxConcurrentStreams: 7,
	}
	addr, clientTLS := startLimitedServer(t, limits)
	http1 := clientTLS.Clone()
	http1.NextProtos = []string{"http/1.1"}

	t.Run("a connection that sends its body slowly is closed after the read timeout", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addr, http1)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }() // the server may have closed it already
		if _, err := fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 6000000\r\n\r\n{\"kind\":", addr); err != nil {
			t.Fatal(err)
		}
		// The server must close the connection; the deadline is only a bound.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("the server still held a connection that sent 8 bytes of a 6 MB body after 10s (ReadTimeout %s)", limits.ReadTimeout)
		}
	})

	t.Run("headers over the limit are answered 431", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: http1}}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		// net/http allows MaxHeaderBytes plus 4 KiB of slack.
		req.Header.Set("X-Padding", strings.Repeat("x", 16<<10))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := resp.Body.Close(); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("16 KiB of headers = %d, want 431", resp.StatusCode)
		}
	})

	t.Run("HTTP/2 clients are told the stream limit", func(t *testing.T) {
		h2 := clientTLS.Clone()
		h2.NextProtos = []string{"h2"}
		conn, err := tls.Dial("tcp", addr, h2)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }() // the server may have closed it already
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		framer := http2.NewFramer(conn, conn)
		if err := framer.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		for {
			frame, err := framer.ReadFrame()
			if err != nil {
				t.Fatalf("no SETTINGS from the server: %v", err)
			}
			if settings, ok := frame.(*http2.SettingsFrame); ok && !settings.IsAck() {
				if v, ok := settings.Value(http2.SettingMaxConcurrentStreams); !ok || v != uint32(limits.MaxConcurrentStreams) {
					t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent: %v), want %d", v, ok, limits.MaxConcurrentStreams)
				}
				return
			}
		}
	})
}

// The limits every listener of serve gets must bound every resource, or a client
// holds it forever: a zero here is "no limit".
func TestServeListenerLimitsAreAllSet(t *testing.T) {
	for name, l := range map[string]ServerLimits{"admission": AdmissionServerLimits(), "ops": OpsServerLimits()} {
		srv := NewServer(nil, nil, l, nil)
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 ||
			srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 || srv.HTTP2 == nil || srv.HTTP2.MaxConcurrentStreams <= 0 {
			t.Errorf("the %s server leaves a limit unset: %+v, HTTP2 %+v", name, l, srv.HTTP2)
		}
	}
}
