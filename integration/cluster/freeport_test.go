package cluster

import "testing"

// TestFreePortNeverHandsOutAPortTwice: kubelets of clusters started in parallel by one
// test process each get their own port, even before any of them has bound it (drawn
// at random, 2,000 ports from 12,768 would repeat about 150 times).
func TestFreePortNeverHandsOutAPortTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		port, err := freePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
}
