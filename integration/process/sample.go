package process

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. The kernel exports
// USER_HZ = 100 on every architecture Go runs Kubernetes on; reading sysconf(_SC_CLK_TCK)
// would need cgo for the same answer.
const userHZ = 100

// Sample is a process's memory and CPU time at one moment, from /proc.
type Sample struct {
	// RSS is VmRSS: resident memory now, in bytes.
	RSS uint64 `json:"rss"`
	// HWM is VmHWM: the highest RSS since the process started, in bytes.
	HWM uint64 `json:"hwm"`
	// CPU is user plus system time since the process started.
	CPU time.Duration `json:"cpu"`
}

// ReadSample reads pid's VmRSS and VmHWM from /proc/<pid>/status and its utime and
// stime from /proc/<pid>/stat.
func ReadSample(pid int) (Sample, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Sample{}, fmt.Errorf("could not read the memory of process %d (has it exited?): %w", pid, err)
	}
	s, err := parseStatus(status)
	if err != nil {
		return Sample{}, fmt.Errorf("process %d: %w", pid, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Sample{}, fmt.Errorf("could not read the CPU time of process %d (has it exited?): %w", pid, err)
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return Sample{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return s, nil
}

// parseStatus reads VmRSS and VmHWM (in kB) from /proc/<pid>/status.
func parseStatus(status []byte) (Sample, error) {
	var s Sample
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			return Sample{}, fmt.Errorf("unexpected %s line %q in /proc status", key, sc.Text())
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return Sample{}, fmt.Errorf("unexpected %s line %q in /proc status: %w", key, sc.Text(), err)
		}
		if key == "VmRSS" {
			s.RSS = kb << 10
		} else {
			s.HWM = kb << 10
		}
		found++
	}
	if found != 2 {
		return Sample{}, fmt.Errorf("/proc status has no VmRSS or VmHWM (a kernel thread or a zombie?)")
	}
	return s, nil
}

// parseStatCPU reads utime + stime (fields 14 and 15) from /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are counted from
// its last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %q has no command name", stat)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc stat has %d fields after the command name, want at least 13", len(fields))
	}
	var ticks uint64
	for _, f := range fields[14-3 : 15-3+1] {
		t, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: utime/stime %q: %w", f, err)
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// Delta is what a process used during a run.
type Delta struct {
	// CPU is the user plus system time used during the run.
	CPU time.Duration `json:"cpu"`
	// CPUPer1000 is CPU seconds per 1,000 successful requests.
	CPUPer1000 float64 `json:"cpuSecondsPer1000"`
	// PeakRSS is the highest VmRSS seen while sampling during the run, in bytes.
	PeakRSS uint64 `json:"peakRSS"`
	// EndRSS is VmRSS at the end of the run, in bytes.
	EndRSS uint64 `json:"endRSS"`
	// HWM is VmHWM at the end of the run, in bytes: the peak since the process started.
	HWM uint64 `json:"hwm"`
}

// Watch samples pid's /proc every interval until stop is called, and returns what it
// used between the call to Watch and the call to stop, for requests successful
// requests.
func Watch(ctx context.Context, pid int, interval time.Duration) (stop func(requests int) (Delta, error), err error) {
	before, err := ReadSample(pid)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu   sync.Mutex
		peak = before.RSS
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s, err := ReadSample(pid); err == nil {
				mu.Lock()
				peak = max(peak, s.RSS)
				mu.Unlock()
			}
		}
	})
	return func(requests int) (Delta, error) {
		cancel()
		wg.Wait()
		after, err := ReadSample(pid)
		if err != nil {
			return Delta{}, err
		}
		d := Delta{CPU: after.CPU - before.CPU, PeakRSS: max(peak, after.RSS), EndRSS: after.RSS, HWM: after.HWM}
		if requests > 0 {
			d.CPUPer1000 = d.CPU.Seconds() / float64(requests) * 1000
		}
		return d, nil
	}, nil
}
