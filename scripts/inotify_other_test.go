//go:build !linux

package scripts

import "testing"

// watchWrites needs inotify; elsewhere the install's atomicity is not
// observed (the callers say so).
func watchWrites(t *testing.T, dir, name string) func() []string {
	t.Log("the install's atomicity is observed with inotify, on Linux only")
	return func() []string { return nil }
}
