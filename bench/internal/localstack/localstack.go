// Package localstack brings up the local stack of bootstrap/stack.sh (a
// dev server with the engine and the stand-in MetaKraftwerk) for the
// benchmarks, and takes it down however they end.
package localstack

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Stack is a running local stack.
type Stack struct {
	// Dir is the stack's state directory.
	Dir string
	// Env is what the stack's env file exports: VAULT_ADDR, VAULT_TOKEN,
	// METAKRAFTWERK_URL, METAKRAFTWERK_CLI (vault or bao), ...
	Env map[string]string
}

// Up brings up the stack of repo with its state in dir, extra in the
// environment of the stack (and so of the server and the plugin). down
// takes it down once, and runs on SIGINT and SIGTERM too (then exiting
// 130), so that an interrupted benchmark leaves no server behind.
func Up(repo, dir string, extra ...string) (st *Stack, down func(), err error) {
	script := filepath.Join(repo, "bootstrap", "stack.sh")
	// The benchmarks address the engine at its default mount, whatever
	// MOUNT the caller has exported (stack.sh honours it).
	env := append(append(os.Environ(), "METAKRAFTWERK_STACK_DIR="+dir, "MOUNT=metakraftwerk"), extra...)
	up := exec.Command(script, "up")
	up.Env, up.Stdout, up.Stderr = env, io.Discard, os.Stderr
	var once sync.Once
	down = func() {
		once.Do(func() {
			cmd := exec.Command(script, "down")
			cmd.Env, cmd.Stdout, cmd.Stderr = env, io.Discard, io.Discard
			_ = cmd.Run()
		})
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		down()
		os.Exit(130)
	}()
	if err := up.Run(); err != nil {
		down()
		return nil, nil, fmt.Errorf("bringing up the stack: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		down()
		return nil, nil, err
	}
	st = &Stack{Dir: dir, Env: map[string]string{}}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok {
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			}
			st.Env[k] = v
		}
	}
	return st, down, nil
}
