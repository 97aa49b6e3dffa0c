package loadgen

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestRunCountsCallsErrorsAndPercentiles(t *testing.T) {
	var calls atomic.Int64
	boom := errors.New("boom")
	res := Run(4, 100, func() error {
		n := calls.Add(1)
		if n%10 == 0 {
			return boom
		}
		time.Sleep(time.Duration(n%3) * time.Millisecond)
		return nil
	})
	if calls.Load() != 100 || res.Errors != 10 || len(res.Latencies) != 90 || !errors.Is(res.FirstErr, boom) {
		t.Fatalf("calls %d errors %d latencies %d first %v", calls.Load(), res.Errors, len(res.Latencies), res.FirstErr)
	}
	for i := 1; i < len(res.Latencies); i++ {
		if res.Latencies[i] < res.Latencies[i-1] {
			t.Fatal("latencies not sorted")
		}
	}
	if res.Percentile(0.5) > res.Percentile(0.99) || res.Percentile(1) != res.Latencies[89] || res.PerSecond() <= 0 {
		t.Fatalf("p50 %s p99 %s rate %f", res.Percentile(0.5), res.Percentile(0.99), res.PerSecond())
	}
	if (Result{}).Percentile(0.5) != 0 {
		t.Fatal("empty result percentile")
	}
}

func TestRSSAndPIDs(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("own RSS %d, %v", rss, err)
	}
	if _, err := RSS(1 << 30); err == nil {
		t.Fatal("RSS of a missing process")
	}
	if peak, err := PeakRSS(os.Getpid()); err != nil || peak < rss/2 {
		t.Fatalf("own peak RSS %d (RSS %d), %v", peak, rss, err)
	}
	if pids := PIDs("no-such-process-" + time.Now().Format("150405.000000")); len(pids) != 0 {
		t.Fatalf("found %v", pids)
	}
}

// CPUTime agrees with the kernel's own answer for this process
// (getrusage): after burning 200 ms of CPU by that measure, CPUTime has
// grown by as much, within a couple of clock ticks.
func TestCPUTime(t *testing.T) {
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ruBefore := rusage()
	for x := 0; rusage()-ruBefore < 200*time.Millisecond; x++ {
		_ = x * x
	}
	ruUsed := rusage() - ruBefore
	after, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if used := after - before; used < ruUsed-30*time.Millisecond || used > ruUsed+30*time.Millisecond {
		t.Fatalf("CPUTime grew by %s while getrusage says %s", used, ruUsed)
	}
	if _, err := CPUTime(1 << 30); err == nil {
		t.Fatal("CPU time of a missing process")
	}
}
