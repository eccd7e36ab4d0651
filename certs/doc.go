// Package certs holds the webhook's TLS material: a CA and the serving
// certificates it signs, a Reloader that serves the certificate on disk and
// follows it when it is rotated, and the server tls.Config built around it.
//
// The API server reaches the webhook through a Service, so the serving
// certificate names the Service's in-cluster DNS names and the CA goes into
// the webhook configurations' caBundle. Rotation never needs a restart: the
// Reloader re-reads the files when the kubelet swaps the Secret volume and
// the next TLS handshake presents the new pair, while connections already open
// finish on the old one.
package certs
