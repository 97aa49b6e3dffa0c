package portpair

import (
	"net"
	"strconv"
	"testing"
)

// A port is handed out once per test binary, and both it and the next one
// can be bound when it is.
func TestFreeGivesABindablePairOnce(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := Free(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < 20000 || p+1 >= 32768 {
			t.Fatalf("port %d is outside 20000–32767", p)
		}
		for _, q := range []int{p, p + 1} {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				t.Fatalf("port %d of the pair cannot be bound: %v", q, err)
			}
			ln.Close()
		}
	}
}
