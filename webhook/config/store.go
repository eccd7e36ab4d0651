package config

import (
	"sync"
	"sync/atomic"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Source gives the admission path the configuration in force.
type Source interface {
	Current() *scheduling.Compiled
}

// Sink receives each valid configuration: the Watcher sends every file it loads to
// one, and discovery's Combiner sends the merged pool table to one. A Store is one;
// with discovery, the Combiner (package webhook/discovery) sits between the Watcher and
// the Store.
type Sink interface {
	Set(c *scheduling.Compiled)
}

// Store holds the configuration in force; a reload swaps it atomically so a request
// sees either the old or the new configuration, never a mix.
type Store struct {
	current atomic.Pointer[scheduling.Compiled]

	mu sync.Mutex
	// changed is closed by the next Set (nil until someone asks for it).
	changed chan struct{}
}

// NewStore returns a store holding c (which may be nil until the first load).
func NewStore(c *scheduling.Compiled) *Store {
	s := &Store{}
	if c != nil {
		s.current.Store(c)
	}
	return s
}

// Current returns the configuration in force, or nil when none was loaded.
func (s *Store) Current() *scheduling.Compiled { return s.current.Load() }

// Set puts c in force.
func (s *Store) Set(c *scheduling.Compiled) {
	s.current.Store(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Changed returns a channel closed by the next Set, for what follows the configuration
// outside the admission path (the policy backend's sync). Take the channel before
// reading Current, so that no Set between the two is missed.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}
