// Package process runs the programs the integration tests, the demo and the
// measurements need — the control-plane components, kubelets, containerd,
// `sysctl-placement serve`, the perf floor — as child processes, one way: start with
// a log file, wait on a readiness condition, stop with SIGTERM and then SIGKILL after
// a grace period, and sample memory and CPU time from /proc. It follows the shape of
// controller-runtime's pkg/internal/testing/process, with the exit watched by one
// goroutine so callers can ask whether a process died while they wait.
package process

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// readyPoll is how often WaitReady checks its condition.
const readyPoll = 50 * time.Millisecond

// Process is one program run as a child process, its stdout and stderr in LogPath.
// Fill the exported fields, then Start; a stopped Process may be started again.
type Process struct {
	// Name is how messages call the process, e.g. "kube-scheduler" or "kubelet node-1".
	Name string
	// Path is the executable, a path or a name looked up in PATH.
	Path string
	// Args are the arguments after the executable.
	Args []string
	// Env is added to this process's environment; nil inherits it unchanged.
	Env []string
	// Dir is the working directory; empty is this process's.
	Dir string
	// LogPath receives stdout and stderr, appended unless TruncateLog is set.
	LogPath string
	// TruncateLog empties LogPath on each Start, so the log holds one run only.
	TruncateLog bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the exit error, once done is closed
}

// Start starts Path with Args and then extra — arguments that change between runs,
// such as a kubelet's allowlist — and returns once the process runs. The process is
// killed with its parent: a test binary that panics or hits -timeout must not leave
// a server running.
func (p *Process) Start(extra ...string) error {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if p.TruncateLog {
		flags |= os.O_TRUNC
	}
	log, err := os.OpenFile(p.LogPath, flags, 0o644)
	if err != nil {
		return fmt.Errorf("could not open the log of %s: %w", p.Name, err)
	}
	cmd := exec.Command(p.Path, append(slices.Clone(p.Args), extra...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = p.Dir
	if p.Env != nil {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("could not start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.err = cmd, done, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Pid is the process id, for /proc.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Exited reports whether the process has ended, and how: the error of exec.Cmd.Wait,
// nil for exit status 0. A process never started has not exited.
func (p *Process) Exited() (bool, error) {
	done := p.Done()
	if done == nil {
		return false, nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// WaitReady checks ready every 50ms until it succeeds, the process exits, or
// timeout passes, and returns how long it took. An exit's error carries the end of
// the log.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) (time.Duration, error) {
	started := time.Now()
	var last error
	err := wait.PollUntilContextTimeout(ctx, readyPoll, timeout, true, func(ctx context.Context) (bool, error) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("%s exited before it was ready (%v); last lines of %s:\n%s", p.Name, err, p.LogPath, p.LogTail(20))
		}
		last = ready(ctx)
		return last == nil, nil
	})
	if err != nil {
		if last != nil && wait.Interrupted(err) {
			return 0, fmt.Errorf("%s was not ready within %s: %v; last lines of %s:\n%s", p.Name, timeout, last, p.LogPath, p.LogTail(20))
		}
		return 0, err
	}
	return time.Since(started), nil
}

// Stop sends SIGTERM, as the kubelet does, and waits grace for the exit; then it
// kills the process. It returns the exit error (nil for status 0, and for a process
// that never started), or that the process had to be killed.
func (p *Process) Stop(grace time.Duration) error {
	done := p.Done()
	if done == nil {
		return nil
	}
	if exited, err := p.Exited(); exited {
		return err
	}
	_ = p.signal(syscall.SIGTERM)
	select {
	case <-done:
		_, err := p.Exited()
		return err
	case <-time.After(grace):
		_ = p.Kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM", p.Name, grace)
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() error {
	done := p.Done()
	if done == nil {
		return nil
	}
	_ = p.signal(syscall.SIGKILL)
	<-done
	return nil
}

func (p *Process) signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Signal(sig)
}

// LogTail returns the last n lines of the process's log, for error messages.
func (p *Process) LogTail(n int) string { return Tail(p.LogPath, n) }

// Tail returns the last n lines of a file, or why it cannot be read: it goes into
// error messages, where a missing log is worth saying.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
