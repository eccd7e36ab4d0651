package process

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func shell(t *testing.T, script string) *Process {
	t.Helper()
	return &Process{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, LogPath: filepath.Join(t.TempDir(), "sh.log")}
}

func TestProcess(t *testing.T) {
	t.Run("a process that exits before it is ready fails the wait with its log", func(t *testing.T) {
		p := shell(t, "echo config is broken; exit 3")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		_, err := p.WaitReady(t.Context(), time.Minute, func(context.Context) error { return errors.New("not yet") })
		if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "config is broken") {
			t.Fatalf("WaitReady = %v, want the exit and the log's last line", err)
		}
		exited, exitErr := p.Exited()
		var status *exec.ExitError
		if !exited || !errors.As(exitErr, &status) || status.ExitCode() != 3 {
			t.Errorf("Exited() = %v, %v; want true and exit status 3", exited, exitErr)
		}
	})
	t.Run("a condition that holds ends the wait", func(t *testing.T) {
		p := shell(t, "exec sleep 60")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		defer p.Kill()
		calls := 0
		if _, err := p.WaitReady(t.Context(), time.Minute, func(context.Context) error {
			if calls++; calls < 3 {
				return errors.New("not yet")
			}
			return nil
		}); err != nil || calls != 3 {
			t.Fatalf("WaitReady = %v after %d checks, want nil after 3", err, calls)
		}
	})
	t.Run("stop ends a process that exits on SIGTERM with its status", func(t *testing.T) {
		p := shell(t, "exec sleep 60")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		err := p.Stop(time.Minute)
		var status *exec.ExitError
		if !errors.As(err, &status) || status.ExitCode() != -1 {
			t.Errorf("Stop = %v, want the exit of a process ended by a signal", err)
		}
		if exited, _ := p.Exited(); !exited {
			t.Error("the process still runs after Stop")
		}
	})
	t.Run("stop kills a process that ignores SIGTERM after the grace period", func(t *testing.T) {
		p := shell(t, "trap '' TERM; echo trapped; while :; do sleep 1; done")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the trap, or SIGTERM could arrive before it is set.
		if _, err := p.WaitReady(t.Context(), time.Minute, func(context.Context) error {
			if !strings.Contains(p.LogTail(1), "trapped") {
				return errors.New("no trap yet")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		err := p.Stop(100 * time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "did not exit within 100ms of SIGTERM") {
			t.Errorf("Stop = %v, want that it had to be killed", err)
		}
		if exited, _ := p.Exited(); !exited {
			t.Error("the process still runs after Stop")
		}
	})
	t.Run("a process never started stops and kills without error", func(t *testing.T) {
		p := shell(t, "true")
		if err := p.Stop(time.Second); err != nil {
			t.Errorf("Stop = %v", err)
		}
		if err := p.Kill(); err != nil {
			t.Errorf("Kill = %v", err)
		}
		if exited, _ := p.Exited(); exited {
			t.Error("a process never started has not exited")
		}
	})
	t.Run("extra arguments follow the process's own and the log appends", func(t *testing.T) {
		p := &Process{Name: "echo", Path: "/bin/echo", Args: []string{"own"}, LogPath: filepath.Join(t.TempDir(), "echo.log")}
		for _, extra := range []string{"first", "second"} {
			if err := p.Start(extra); err != nil {
				t.Fatal(err)
			}
			<-p.Done()
		}
		if got := p.LogTail(5); got != "own first\nown second" {
			t.Errorf("log = %q, want both runs with the extra argument after the own one", got)
		}
		p.TruncateLog = true
		if err := p.Start("third"); err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		if got := p.LogTail(5); got != "own third" {
			t.Errorf("log with TruncateLog = %q, want the last run only", got)
		}
	})
}
