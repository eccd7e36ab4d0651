package process

import (
	"os"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	status := []byte("Name:\tsysctl-placeme\nVmPeak:\t 1300000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   30720 kB\nThreads:\t9\n")
	s, err := parseStatus(status)
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS != 30<<20 || s.HWM != 40<<20 {
		t.Errorf("RSS %d HWM %d, want 30 MiB and 40 MiB", s.RSS, s.HWM)
	}
	if _, err := parseStatus([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("a status without VmRSS (a kernel thread) must be an error")
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name holds a space and a parenthesis; utime 250 and stime 50 ticks.
	stat := []byte("4242 (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 7000 18446744073709551615")
	cpu, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 3*time.Second {
		t.Errorf("CPU = %s, want 3s (300 ticks at USER_HZ 100)", cpu)
	}
}

func TestReadSampleOfThisProcess(t *testing.T) {
	s, err := ReadSample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS == 0 || s.HWM < s.RSS {
		t.Errorf("RSS %d, HWM %d: want a positive RSS at most HWM", s.RSS, s.HWM)
	}
}
