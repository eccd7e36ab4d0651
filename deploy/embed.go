// Package deploy holds the manifests and the examples. The Go side only embeds the
// example config and workloads so that `sysctl-placement plan` works with no flags and
// tests, the demo and the README all use the very same files.
package deploy

import "embed"

// ExampleConfig is the example PlacementConfig (examples/placement-config.yaml).
//
//go:embed examples/placement-config.yaml
var ExampleConfig []byte

// Examples holds the example workloads (examples/*.yaml).
//
//go:embed examples/*.yaml
var Examples embed.FS
