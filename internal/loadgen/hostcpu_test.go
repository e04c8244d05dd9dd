package loadgen

import (
	"runtime"
	"testing"

	"github.com/prometheus/procfs"
)

func TestBusyShareCountsIdleAndIowaitAsIdleAndLeavesStealOut(t *testing.T) {
	a := cpuTimesOf(procfs.CPUStat{User: 100, System: 50, Idle: 800, Iowait: 50, Steal: 10})
	b := cpuTimesOf(procfs.CPUStat{User: 160, Nice: 5, System: 70, Idle: 810, Iowait: 55, IRQ: 2, SoftIRQ: 3, Steal: 500})
	// busy +90 (user 60, nice 5, system 20, irq 2, softirq 3), idle +15: 90 of 105
	if got, want := busyShare(a, b), 90.0/105; got != want {
		t.Errorf("busy share %v, want %v", got, want)
	}
	if got := busyShare(b, a); got != -1 {
		t.Errorf("busy share of readings in the wrong order %v, want -1 (unknown)", got)
	}
	if got := cpuPercent(busyShare(a, b)); got != "86%" {
		t.Errorf("cpuPercent = %q, want 86%%", got)
	}
	if got := cpuPercent(-1); got != "-" {
		t.Errorf("cpuPercent(unknown) = %q, want -", got)
	}
}

func TestReadCPUTimesOnLinux(t *testing.T) {
	a, ok := readCPUTimes()
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatal("CPU times read without /proc/stat")
		}
		return
	}
	if !ok || a.total <= 0 || a.busy <= 0 || a.busy > a.total || a.cpus < 1 || a.cpus > 4096 {
		t.Fatalf("CPU times %+v, %v", a, ok)
	}
	b, _ := readCPUTimes()
	if s := busyShare(a, b); s > 1 || (s < 0 && b.total > a.total) { // -1 only when no tick passed
		t.Fatalf("busy share %v between %+v and %+v", s, a, b)
	}
}
