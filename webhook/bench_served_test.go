package webhook

import (
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	kwhprometheus "github.com/slok/kubewebhook/v2/pkg/metrics/prometheus"

	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/logging"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// servedEnv wires the handlers as `serve` does: a JSON logrus logger at info level
// (to io.Discard), our decision metrics and kubewebhook's Prometheus recorder. The
// plain handler benchmarks leave the logger and metrics out; these measure what the
// per-admission log line and kubewebhook's logger cost on top.
func servedEnv(b *testing.B) testEnv {
	b.Helper()
	compiled, err := config.Compile(deploy.ExampleConfig)
	if err != nil {
		b.Fatal(err)
	}
	l := logrus.New()
	l.Out = io.Discard
	l.Formatter = logging.JSONFormatter{}
	log := l.WithField("version", "bench")
	reg := prometheus.NewRegistry()
	cfg := Config{
		Config:     config.NewStore(compiled),
		Namespaces: namespaces.Static{"team": {Name: "team", Labels: map[string]string{scheduling.LabelEnabled: "true"}}},
		Metrics:    NewMetrics(reg),
		Logger:     log,
	}
	rec, err := kwhprometheus.NewRecorder(kwhprometheus.RecorderConfig{Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	m, v := newWebhooks(b, cfg)
	mh, err := review.NewHandler(review.HandlerConfig{Webhook: m, Recorder: rec, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	vh, err := review.NewHandler(review.HandlerConfig{Webhook: v, Recorder: rec, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	return testEnv{mutate: mh, validate: vh}
}

// BenchmarkServedMutateHandler is BenchmarkMutateHandler wired as `serve` wires it.
func BenchmarkServedMutateHandler(b *testing.B) {
	env := servedEnv(b)
	body := benchReview(b, env.mutate, deploymentPod)
	if ops := patchOps(b, response(b, post(env.mutate, body))); len(ops) == 0 {
		b.Fatal("the benchmark pod is not placed: the mutating webhook returned no patch")
	}
	serveBench(b, env.mutate, body)
}

// BenchmarkServedValidateHandler is BenchmarkValidateHandler wired as `serve` wires it.
func BenchmarkServedValidateHandler(b *testing.B) {
	env := servedEnv(b)
	placed := string(mutated(b, env.mutate))
	body := benchReview(b, env.validate, placed)
	serveBench(b, env.validate, body)
}
