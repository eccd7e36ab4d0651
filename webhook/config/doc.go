// Package config loads, watches and holds the PlacementConfig the webhooks decide by.
package config
