// Package namespaces keeps the labels and annotations of every Namespace in memory for the admission path.
package namespaces
