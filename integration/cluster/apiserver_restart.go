package cluster

// Fault drills stop the API server and bring it back. envtest cannot restart its API
// server in place (a restart regenerates the serving and client certificates), so the
// drill stops the process itself and starts the same binary with the same command
// line: same port, same certificates, same etcd, so every client's connection
// settings stay valid, exactly like a control-plane node rebooting.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after 30 seconds) and returns
// once it has exited. etcd, the controller manager and the scheduler keep running and
// retry, as they would in a real outage. Call StartAPIServer to bring it back.
func (c *Cluster) StopAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stoppedAPIServer != nil {
		return errors.New("the API server is already stopped")
	}
	pid, args, err := c.apiServerProcess()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("could not stop kube-apiserver (pid %d): %w", pid, err)
	}
	gone := func(context.Context) (bool, error) {
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
		return os.IsNotExist(err), nil
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, gone); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, gone); err != nil {
			return fmt.Errorf("kube-apiserver (pid %d) did not exit: %w", pid, err)
		}
	}
	c.stoppedAPIServer = args
	return nil
}

// StartAPIServer starts the API server StopAPIServer stopped, with the same command
// line, and waits until it answers /readyz.
func (c *Cluster) StartAPIServer(ctx context.Context, timeout time.Duration) error {
	c.mu.Lock()
	args := c.stoppedAPIServer
	if args == nil {
		c.mu.Unlock()
		return errors.New("the API server is not stopped; call StopAPIServer first")
	}
	comp := newComponent(c, "kube-apiserver", args[1:])
	comp.Path = args[0]
	if err := comp.Start(); err != nil {
		c.mu.Unlock()
		return err
	}
	c.stoppedAPIServer = nil
	// First in the list: Stop stops components last to first, so the API server
	// outlives the controller manager and the scheduler.
	c.components = append([]*process.Process{comp}, c.components...)
	c.mu.Unlock()

	rc := c.Client.Discovery().RESTClient()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if exited, err := comp.Exited(); exited {
			return false, fmt.Errorf("kube-apiserver exited while starting: %v\n%s", err, comp.LogTail(20))
		}
		return rc.Get().AbsPath("/readyz").Do(ctx).Error() == nil, nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver did not become ready again within %s: %w", timeout, err)
	}
	return nil
}

// apiServerProcess finds this process's kube-apiserver child (started by envtest, or
// by an earlier StartAPIServer) and returns its pid and command line.
func (c *Cluster) apiServerProcess() (int, []string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, fmt.Errorf("finding kube-apiserver needs /proc: %w", err)
	}
	self := os.Getpid()
	want := filepath.Join(c.BinDir, "kube-apiserver")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		fields := strings.Fields(string(rest))
		if len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) > 0 && (args[0] == want || filepath.Base(args[0]) == "kube-apiserver") {
			return pid, args, nil
		}
	}
	return 0, nil, errors.New("no running kube-apiserver child process found")
}
