package cluster

import (
	"path/filepath"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// componentGrace is how long a control-plane component or a kubelet has to exit
// after SIGTERM before it is killed.
const componentGrace = 10 * time.Second

// newComponent is a control-plane binary of BinDir run as a child process, its output
// in <WorkDir>/<name>.log.
func newComponent(c *Cluster, name string, args []string) *process.Process {
	return &process.Process{
		Name:    name,
		Path:    filepath.Join(c.BinDir, name),
		Args:    args,
		LogPath: filepath.Join(c.WorkDir, name+".log"),
	}
}
