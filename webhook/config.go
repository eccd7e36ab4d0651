package webhook

import (
	"sync/atomic"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// ConfigSource gives the admission path the configuration in force.
type ConfigSource interface {
	Current() *scheduling.Compiled
}

// ConfigSink receives each valid configuration the ConfigWatcher loads. A ConfigStore
// is one; with discovery, a combiner that merges the static pools with the discovered
// ones (package webhook/discovery) sits between the watcher and the store.
type ConfigSink interface {
	Set(c *scheduling.Compiled)
}

// ConfigStore holds the configuration in force; a reload swaps it atomically so a
// request sees either the old or the new configuration, never a mix.
type ConfigStore struct {
	current atomic.Pointer[scheduling.Compiled]
}

// NewConfigStore returns a store holding c (which may be nil until the first load).
func NewConfigStore(c *scheduling.Compiled) *ConfigStore {
	s := &ConfigStore{}
	if c != nil {
		s.current.Store(c)
	}
	return s
}

// Current returns the configuration in force, or nil when none was loaded.
func (s *ConfigStore) Current() *scheduling.Compiled { return s.current.Load() }

// Set puts c in force.
func (s *ConfigStore) Set(c *scheduling.Compiled) { s.current.Store(c) }
