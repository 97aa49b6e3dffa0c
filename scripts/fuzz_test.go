package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stubGoForFuzz lists one fuzz target and answers its run as $FAKE_FUZZ
// says: "ok", "deadline" (Go's coordinator race: the deadline message and
// no input written) or "finding" (an input written, as a crash does).
const stubGoForFuzz = `#!/usr/bin/env bash
if [[ $1 == test && $2 == -list ]]; then echo FuzzX; echo "ok  	pkg	0.01s"; exit 0; fi
case $FAKE_FUZZ in
ok) echo PASS; exit 0 ;;
deadline) printf -- '--- FAIL: FuzzX (10.2s)\n    context deadline exceeded\nFAIL\n'; exit 1 ;;
finding)
	mkdir -p testdata/fuzz/FuzzX && echo 'go test fuzz v1' >testdata/fuzz/FuzzX/abc
	printf -- '--- FAIL: FuzzX (3.0s)\n    Failing input written to testdata/fuzz/FuzzX/abc\n    context deadline exceeded\nFAIL\n'; exit 1 ;;
esac
exit 2
`

// fuzz.sh fails on a finding, and only on one: Go 1.26's coordinator
// race, which writes no input, is reported and passed over.
func TestFuzzScriptTellsAFindingFromTheCoordinatorRace(t *testing.T) {
	script, err := filepath.Abs("fuzz.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		mode   string
		fails  bool
		output string
	}{
		{"ok", false, "PASS"},
		{"deadline", false, "not a finding"},
		{"finding", true, "Failing input written"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			stub := filepath.Join(dir, "go")
			if err := os.WriteFile(stub, []byte(stubGoForFuzz), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", script, "1s", ".")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GO="+stub, "FAKE_FUZZ="+tt.mode)
			out, err := cmd.CombinedOutput()
			if (err != nil) != tt.fails || !strings.Contains(string(out), tt.output) {
				t.Fatalf("fuzz.sh with %s: err %v, want failure %v\n%s", tt.mode, err, tt.fails, out)
			}
		})
	}
}
