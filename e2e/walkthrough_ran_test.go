//go:build e2e

package e2e

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
)

// ranBlocks records the marked doc blocks the tests ran, by name, and
// markedBlocks the doc of each marked block the tests looked up.
var ranBlocks, markedBlocks sync.Map

// onlyOn names the blocks that run on one platform only: the README's
// install, enable and upgrade are Vault's, install.md's openbao-* blocks
// OpenBao's.
var onlyOn = map[string]string{
	"install": "vault", "enable": "vault", "upgrade": "vault",
	"openbao-install": "openbao", "openbao-enable": "openbao", "openbao-upgrade": "openbao",
}

// unranBlocks lists the blocks marked <!-- walkthrough: NAME --> in the
// README and docs/ that no test of this run ran. Blocks that
// scripts/e2e.sh ran before the suite (the release build) are listed in
// $RELEASE_DIR/.walkthrough-ran.
func unranBlocks(root string, openBao bool) ([]string, error) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	docs = append(docs, filepath.Join(root, "README.md"))
	if dir := os.Getenv("RELEASE_DIR"); dir != "" {
		if data, err := os.ReadFile(filepath.Join(dir, ".walkthrough-ran")); err == nil {
			for _, name := range strings.Fields(string(data)) {
				ranBlocks.Store(name, true)
			}
		}
	}
	var out []string
	for _, doc := range docs {
		f, err := os.Open(doc)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "<!-- walkthrough: ") {
				continue
			}
			name := strings.TrimSuffix(strings.TrimPrefix(line, "<!-- walkthrough: "), " -->")
			if p, ok := onlyOn[name]; ok && (p == "openbao") != openBao {
				continue
			}
			if _, ran := ranBlocks.Load(name); !ran {
				rel, _ := filepath.Rel(root, doc)
				out = append(out, rel+": "+name)
			}
		}
		f.Close()
	}
	sort.Strings(out)
	return dedupe(out), nil
}

func dedupe(list []string) []string {
	var out []string
	for i, s := range list {
		if i == 0 || s != list[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// checkEveryBlockRan fails a passing, unfiltered run of the suite in which
// a marked block did not run: a marker with no test behind it would
// claim a test that does not exist.
func checkEveryBlockRan(code int) int {
	if code != 0 {
		return code
	}
	if f := flag.Lookup("test.run"); f == nil || f.Value.String() != "" {
		return code
	}
	if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
		return code
	}
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	openBao := false
	if bin := os.Getenv("SERVER_BIN"); bin != "" {
		openBao = platform.OpenBao
	}
	missing, err := unranBlocks(filepath.Dir(root), openBao)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d blocks marked <!-- walkthrough: NAME --> ran in no test:\n  %s\n", len(missing), strings.Join(missing, "\n  "))
		if slices.Contains(missing, "docs/install.md: release-throwaway") {
			fmt.Fprintln(os.Stderr, "  (RELEASE_DIR was not built by scripts/e2e.sh, which runs install.md's release-throwaway block and notes it in RELEASE_DIR/.walkthrough-ran)")
		}
		return 1
	}
	fmt.Fprintln(os.Stderr, "every block marked <!-- walkthrough: NAME --> in README.md and docs/ ran")
	return code
}
