// Package portpair hands tests a loopback port for a Vault or OpenBao
// server they start themselves.
package portpair

import (
	"context"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Ports handed out in this test binary, so that parallel tests never get
// the same one.
var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free finds a loopback port p with p+1 also free (a server's cluster
// listener takes the next port). Ports come from below Linux's ephemeral
// range (32768+), where listeners on port 0, such as the stand-ins of
// parallel tests, never land; otherwise a stand-in could take a port
// between this check and the server binding it.
func Free(tb testing.TB) int {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 500 {
		port := 20000 + 2*mrand.IntN(6000) //nolint:gosec // G404: spreads test ports; nothing depends on it being unguessable
		if given[port] {
			continue
		}
		ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln2, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		ln.Close()
		if err == nil {
			ln2.Close()
			given[port] = true
			return port
		}
	}
	tb.Fatal("no free loopback port pair")
	return 0
}
