package loadgen

import (
	"fmt"

	"github.com/prometheus/procfs"
)

// cpuTimes is the CPU time this host has spent so far, busy and in all, in seconds summed over its cpus.
type cpuTimes struct {
	busy, total float64
	cpus        int
}

// readCPUTimes reads the host's CPU times (Linux /proc/stat); false where there are none. A load generator
// on the machine that runs the system tells so whether a rate ran out of CPU.
func readCPUTimes() (cpuTimes, bool) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return cpuTimes{}, false
	}
	s, err := fs.Stat()
	if err != nil {
		return cpuTimes{}, false
	}
	t := cpuTimesOf(s.CPUTotal)
	t.cpus = len(s.CPU)
	return t, true
}

// cpuTimesOf counts idle and iowait as idle and leaves out steal (another guest of the hypervisor ran);
// guest time is already in user and nice.
func cpuTimesOf(c procfs.CPUStat) cpuTimes {
	busy := c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ
	return cpuTimes{busy: busy, total: busy + c.Idle + c.Iowait}
}

// busyShare is the share of the host's CPU busy between two readings: 0..1, or -1 when unknown.
func busyShare(a, b cpuTimes) float64 {
	if b.total <= a.total || b.busy < a.busy {
		return -1
	}
	return (b.busy - a.busy) / (b.total - a.total)
}

// cpuPercent formats a busy share for a report: "94%", or "-" when unknown.
func cpuPercent(share float64) string {
	if share < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*share)
}
