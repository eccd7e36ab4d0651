package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// component is a control-plane binary or a kubelet run as a child process, its output
// in its log file (<WorkDir>/<name>.log for the control plane).
type component struct {
	name    string
	path    string
	args    []string
	logPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	mu   sync.Mutex
	err  error // the exit error, once done is closed
}

func newComponent(c *Cluster, name string, args []string) *component {
	return &component{
		name:    name,
		path:    filepath.Join(c.BinDir, name),
		args:    args,
		logPath: filepath.Join(c.WorkDir, name+".log"),
	}
}

func (p *component) start() error { return p.startWith() }

// startWith starts the process with extra arguments after its own, e.g. a kubelet's
// allowlist, which changes between restarts.
func (p *component) startWith(extra ...string) error {
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(p.path, append(slices.Clone(p.args), extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// Kill the child with its parent: a test binary that panics or hits -timeout
	// must not leave a scheduler running.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("could not start %s: %w", p.name, err)
	}
	p.done = make(chan struct{})
	go func() {
		err := p.cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return nil
}

// exited reports whether the process has ended, and how.
func (p *component) exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// stop asks the process to terminate and kills it if it has not within ten seconds.
func (p *component) stop() error {
	if p.cmd == nil || p.done == nil {
		return nil
	}
	if exited, _ := p.exited(); exited {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// logTail returns the last n lines of the component's log, for error messages.
func (p *component) logTail(n int) string {
	return tail(p.logPath, n)
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
