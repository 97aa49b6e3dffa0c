// Package loadgen is the small load driver shared by `make bench` and the
// e2e load tests: a fixed number of calls from a fixed number of workers,
// and a process's resident memory.
package loadgen

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result of a Run.
type Result struct {
	// Wall is the time from the first call to the last answer.
	Wall time.Duration
	// Latencies of the successful calls, sorted ascending.
	Latencies []time.Duration
	// Errors counts failed calls; FirstErr is one of them.
	Errors   int64
	FirstErr error
}

// Run makes n calls of do from conc concurrent workers.
func Run(conc, n int, do func() error) Result {
	lat := make([]time.Duration, n)
	failed := make([]bool, n)
	var next atomic.Int64
	var once sync.Once
	var res Result
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := time.Now()
				if err := do(); err != nil {
					failed[i] = true
					once.Do(func() { res.FirstErr = err })
					continue
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(start)
	for i, l := range lat {
		if failed[i] {
			res.Errors++
			continue
		}
		res.Latencies = append(res.Latencies, l)
	}
	sort.Slice(res.Latencies, func(i, j int) bool { return res.Latencies[i] < res.Latencies[j] })
	return res
}

// Percentile returns the p-quantile (0..1) of the successful calls.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[min(len(r.Latencies)-1, int(p*float64(len(r.Latencies))))]
}

// PerSecond is the rate of successful calls.
func (r Result) PerSecond() float64 {
	return float64(len(r.Latencies)) / r.Wall.Seconds()
}

// RSS returns the resident set size of pid in bytes (Linux /proc).
func RSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS:") }

// PeakRSS returns the largest resident set size pid has had, in bytes.
func PeakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM:") }

// statusBytes reads a "<field> <n> kB" line of /proc/<pid>/status.
func statusBytes(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s for pid %d", strings.TrimSuffix(field, ":"), pid)
}

// PIDs returns the processes whose command line contains path.
func PIDs(path string) []int {
	out, _ := exec.CommandContext(context.Background(), "pgrep", "-f", path).Output() //nolint:gosec // G204: a fixed program; path is the caller's binary, matched, not run
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// CPUTime is the user plus system CPU time the process has used, from its
// own accounting in /proc/<pid>/stat (all its threads, live and exited).
func CPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start past its closing parenthesis. utime and stime are fields 14
	// and 15, in clock ticks of 1/100 s on Linux.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * (time.Second / clockTicks), nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
