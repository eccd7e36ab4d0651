// Command floor serves perf.FloorHandler over HTTPS on a loopback address until
// SIGTERM: the least an admission webhook must do, to compare `serve` against. It is a
// separate small program so that its memory is that of a minimal Go webhook, not of
// the load generator.
//
//	floor -listen 127.0.0.1:9443 -cert tls.crt -key tls.key
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9443", "loopback address to serve on")
	cert := flag.String("cert", "", "PEM serving certificate (required)")
	key := flag.String("key", "", "PEM private key of -cert (required)")
	flag.Parse()
	if *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "floor: -cert and -key are required, e.g. the tls.crt and tls.key of `sysctl-placement certs --write-dir`")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := perf.ServeFloor(ctx, *listen, *cert, *key); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
