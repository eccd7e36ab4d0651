package perf

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// FloorPatch is the floor's answer to every pod with sysctls: the JSON patch the real
// webhook sends for DeploymentPod with the example config (placement on the ipc pool),
// so that both servers write responses of the same size.
var FloorPatch = []byte(`[` +
	`{"op":"add","path":"/spec/nodeSelector","value":{"sysctl-placement.io/pool":"ipc"}},` +
	`{"op":"add","path":"/spec/tolerations","value":[{"key":"dedicated","operator":"Equal","value":"ipc","effect":"NoSchedule"}]},` +
	`{"op":"add","path":"/metadata/annotations","value":{"sysctl-placement.io/placement":"{\"pools\":[\"ipc\"],\"sysctls\":[\"kernel.sem\",\"kernel.shmmax\"],\"nodeSelector\":{\"sysctl-placement.io/pool\":\"ipc\"},\"tolerations\":[{\"key\":\"dedicated\",\"operator\":\"Equal\",\"value\":\"ipc\",\"effect\":\"NoSchedule\"}]}"}},` +
	`{"op":"add","path":"/metadata/labels/sysctl-placement.io~1placed","value":"true"}` +
	`]`)

// maxFloorBody matches the webhook's own limit on request bodies.
const maxFloorBody = 6 << 20

// FloorHandler is the least an admission webhook must do, written the obvious way:
// decode the AdmissionReview and the pod with encoding/json into the k8s.io/api types,
// and answer with a fixed patch when the pod asks for sysctls. It logs nothing, keeps
// no metrics and decides nothing; the real webhook is compared against it.
func FloorHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /mutate", serveFloor)
	return mux
}

func serveFloor(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFloorBody))
	if err != nil {
		http.Error(w, "could not read the AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("the body is not an AdmissionReview with a request (decode error: %v)", err), http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
		http.Error(w, "the request's object is not a pod: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if sc := pod.Spec.SecurityContext; sc != nil && len(sc.Sysctls) > 0 {
		patchType := admissionv1.PatchTypeJSONPatch
		resp.PatchType, resp.Patch = &patchType, FloorPatch
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		http.Error(w, "could not encode the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// ServeFloor serves FloorHandler over HTTPS on listen (which must be a loopback
// address) with the given certificate until ctx ends. The server's timeouts and TLS
// versions are those of `serve`, and, like `serve`, it offers HTTP/2 and HTTP/1.1.
func ServeFloor(ctx context.Context, listen, certFile, keyFile string) error {
	if err := requireLoopback(listen); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("could not load the floor's certificate: %w", err)
	}
	srv := &http.Server{
		Handler:           FloorHandler(),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("the floor could not listen on %s: %w", listen, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// requireLoopback refuses any listen or target address that is not 127.0.0.1 or ::1:
// a load generator must never be pointed at a shared server by mistake.
func requireLoopback(hostPort string) error {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", hostPort, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address; use 127.0.0.1:<port>", hostPort)
	}
	return nil
}
