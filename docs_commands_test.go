package metakraftwerk

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The tests in this file keep the docs' commands runnable as written: every
// shell block is run by the e2e walkthrough or says why not, no block
// resets the operator's MOUNT, and no command hard-codes the default mount.

// shellLangs are the fences that hold shell commands.
var shellLangs = map[string]bool{"sh": true, "shell": true, "bash": true, "shell-session": true, "console": true}

// docBlock is one fenced block of a doc, with the marker line above it.
type docBlock struct {
	doc, lang, marker, text string
	line                    int
}

// operatorDocs are the README and docs/*.md.
func operatorDocs(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("docs/*.md")
	if err != nil || len(docs) < 5 {
		t.Fatalf("docs/*.md: %v %v", docs, err)
	}
	return append([]string{"README.md"}, docs...)
}

// fencedBlocks lists a doc's fenced blocks; marker is the last non-empty
// line before the fence when it is an HTML comment.
func fencedBlocks(t *testing.T, doc string) []docBlock {
	t.Helper()
	var out []docBlock
	var cur *docBlock
	prev := ""
	for i, line := range strings.Split(readDoc(t, doc), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &docBlock{doc: doc, lang: strings.TrimPrefix(trimmed, "```"), line: i + 1}
			if strings.HasPrefix(prev, "<!-- ") {
				cur.marker = prev
			}
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += trimmed + "\n"
		}
		if trimmed != "" {
			prev = trimmed
		}
	}
	return out
}

var markerRe = regexp.MustCompile(`^<!-- (?:walkthrough: [a-z0-9-]+|not run: \S.*\S) -->$`)

// Every shell block carries, directly above it, the walkthrough marker
// that runs it or a reason it is not run. A walkthrough name belongs to
// one doc (its blocks there run joined, in order), so that the
// walkthrough's record of what ran is unambiguous.
func TestDocShellBlocksAreMarked(t *testing.T) {
	seen := map[string]string{}
	run, notRun := 0, 0
	for _, doc := range operatorDocs(t) {
		for _, b := range fencedBlocks(t, doc) {
			if !shellLangs[b.lang] {
				if strings.HasPrefix(b.marker, "<!-- walkthrough: ") || strings.HasPrefix(b.marker, "<!-- not run: ") {
					t.Errorf("%s:%d: a %q block is marked %s, but only shell blocks run", doc, b.line, b.lang, b.marker)
				}
				continue
			}
			switch {
			case !markerRe.MatchString(b.marker):
				t.Errorf("%s:%d: the %s block has no <!-- walkthrough: NAME --> or <!-- not run: <reason> --> directly above it", doc, b.line, b.lang)
			case strings.HasPrefix(b.marker, "<!-- walkthrough: "):
				run++
				name := strings.TrimSuffix(strings.TrimPrefix(b.marker, "<!-- walkthrough: "), " -->")
				if other, dup := seen[name]; dup && other != doc {
					t.Errorf("%s:%d: the walkthrough name %s is used again (first in %s)", doc, b.line, name, other)
				}
				seen[name] = doc
			default:
				notRun++
			}
		}
	}
	t.Logf("shell blocks in README.md and docs/: %d run by the walkthrough, %d not run", run, notRun)
	if run < 30 {
		t.Errorf("only %d blocks are run", run)
	}
}

// mountAssignRe finds an assignment to MOUNT in a shell line.
var mountAssignRe = regexp.MustCompile(`(?:^|[\s;&|(])(?:export\s+)?MOUNT=(\S*)`)

// No block overwrites the MOUNT the operator has: a block may only give it
// a default.
func TestDocBlocksKeepMount(t *testing.T) {
	for _, doc := range operatorDocs(t) {
		for _, b := range fencedBlocks(t, doc) {
			if !shellLangs[b.lang] {
				continue
			}
			for _, m := range mountAssignRe.FindAllStringSubmatch(b.text, -1) {
				if !strings.HasPrefix(m[1], "${MOUNT:-") {
					t.Errorf("%s:%d: a block sets MOUNT=%s, overwriting the operator's own (write MOUNT=${MOUNT:-…} for a default)", doc, b.line, m[1])
				}
			}
		}
	}
}

// hardMountRes find the default mount written into a command: as a path,
// as /v1/<mount>, or as the mount argument of secrets tune and disable.
var hardMountRes = []*regexp.Regexp{
	regexp.MustCompile(`(?:^|[\s"'=(])/?(?:v1/)?metakraftwerk/|/v1/metakraftwerk\b`),
	regexp.MustCompile(`-path=["']?metakraftwerk\b`),
	regexp.MustCompile(`secrets\s+(?:tune|disable)\b.*\smetakraftwerk(?:\s|$)`),
}

// allowedPaths are names that look like the mount but are not: the
// provider's source address, the project's repository, and the policy
// files' paths that the documented sed replaces with $MOUNT.
var allowedPaths = regexp.MustCompile(`metakraftwerk/(?:mkvault|vault-plugin-secrets-metakraftwerk)|path \\"metakraftwerk/`)

// commandRe recognises an inline code span that is a command.
var commandRe = regexp.MustCompile(`^(?:[A-Z_]+=\S*\s+)*(?:vault|bao|curl|terraform|tofu|printf|sed|jq|export|crane|skopeo|gpg)\s`)

func hardCodesMount(cmd string) bool {
	cmd = allowedPaths.ReplaceAllString(cmd, "")
	for _, re := range hardMountRes {
		if re.MatchString(cmd) {
			return true
		}
	}
	return false
}

// No command in the README or docs/, in a shell block or inline in prose
// and tables, names the default mount: an operator at another mount would
// copy it and get "no handler for route". The API reference's samples are
// written at the default mount, as Vault's API pages are, and say so.
func TestDocCommandsTakeTheMount(t *testing.T) {
	for _, bad := range []string{`vault read metakraftwerk/roles/x`, `curl $VAULT_ADDR/v1/metakraftwerk/creds/x`, `vault secrets tune -x=y metakraftwerk`, `bao secrets enable -path=metakraftwerk x`} {
		if !hardCodesMount(bad) {
			t.Fatalf("the check misses %q", bad)
		}
	}
	spanRe := regexp.MustCompile("`([^`\n]+)`")
	for _, doc := range operatorDocs(t) {
		if doc == filepath.Join("docs", "api.md") {
			continue
		}
		for _, b := range fencedBlocks(t, doc) {
			if !shellLangs[b.lang] {
				continue
			}
			for _, line := range strings.Split(b.text, "\n") {
				if hardCodesMount(line) {
					t.Errorf("%s:%d: a block's command names the mount metakraftwerk (use \"$MOUNT\"): %s", doc, b.line, line)
				}
			}
		}
		inFence := false
		for i, line := range strings.Split(readDoc(t, doc), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
			}
			if inFence {
				continue
			}
			for _, m := range spanRe.FindAllStringSubmatch(line, -1) {
				if commandRe.MatchString(m[1]) && hardCodesMount(m[1]) {
					t.Errorf("%s:%d: the command `%s` names the mount metakraftwerk (use \"$MOUNT\")", doc, i+1, m[1])
				}
			}
		}
	}
}

// Agent's templates, in the README and as shipped, take the mount from
// MOUNT in Agent's environment.
func TestAgentTemplatesTakeTheMount(t *testing.T) {
	secretRe := regexp.MustCompile(`with secret (\S+)`)
	files := []string{"README.md", "bootstrap/agent/token.ctmpl", "bootstrap/agent/exec.hcl.tmpl"}
	found := 0
	for _, f := range files {
		for _, m := range secretRe.FindAllStringSubmatch(readDoc(t, f), -1) {
			found++
			if !strings.HasPrefix(m[1], `(printf`) || !strings.Contains(readDoc(t, f), `(env \"MOUNT\")`) && !strings.Contains(readDoc(t, f), `(env "MOUNT")`) {
				t.Errorf("%s: an Agent template reads %s, not the mount from MOUNT", f, m[1])
			}
		}
	}
	if found < 4 {
		t.Errorf("found %d Agent templates", found)
	}
}

// docBlockByName is the text of the shell block marked with name.
func docBlockByName(t *testing.T, doc, name string) string {
	t.Helper()
	for _, b := range fencedBlocks(t, doc) {
		if b.marker == "<!-- walkthrough: "+name+" -->" {
			return b.text
		}
	}
	t.Fatalf("%s has no block marked <!-- walkthrough: %s -->", doc, name)
	return ""
}

// The throwaway release block builds a release Terraform takes from a
// mirror with the example as it is: a version that is not a pre-release,
// signed with an RSA key (registries refuse ECC keys). scripts/e2e.sh
// builds the walkthrough's releases by running this block.
func TestThrowawayReleaseWorksWithTerraform(t *testing.T) {
	block := docBlockByName(t, "docs/install.md", "release-throwaway")
	m := regexp.MustCompile(`make release VERSION=(v\S+)`).FindStringSubmatch(block)
	if m == nil || !regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(m[1]) {
		t.Errorf("install.md's throwaway release is %v, not a plain vX.Y.Z: Terraform skips pre-releases", m)
	}
	if !regexp.MustCompile(`--quick-gen-key .* rsa[0-9]+ sign`).MatchString(block) {
		t.Error("install.md's throwaway key is not an RSA key")
	}
	script := readDoc(t, "scripts/e2e.sh")
	if !strings.Contains(script, "release-throwaway") || strings.Contains(script, "ed25519") {
		t.Error("scripts/e2e.sh does not build the walkthrough's releases with install.md's block")
	}
}

// The enable blocks enable the version the install block just installed.
func TestEnableBlocksUseTheInstalledVersion(t *testing.T) {
	for doc, name := range map[string]string{"README.md": "enable", "docs/install.md": "openbao-enable"} {
		if block := docBlockByName(t, doc, name); !strings.Contains(block, "-plugin-version=v${V}") {
			t.Errorf("%s's %s block does not enable v${V}:\n%s", doc, name, block)
		}
	}
}

// make up's stand-in has the users the README's set-up and the Terraform
// example name, with their projects, so that both paste against it.
func TestStandInHasTheDocsUsers(t *testing.T) {
	var users []struct {
		Email    string   `json:"email"`
		Projects []string `json:"projects"`
	}
	if err := json.Unmarshal([]byte(readDoc(t, "bootstrap/users.json")), &users); err != nil {
		t.Fatal(err)
	}
	has := func(email string, projects []string) bool {
		for _, u := range users {
			if u.Email != email {
				continue
			}
			for _, p := range projects {
				if !strings.Contains(","+strings.Join(u.Projects, ",")+",", ","+p+",") {
					return false
				}
			}
			return true
		}
		return false
	}
	setup := regexp.MustCompile(`email=(\S+) password=- projects=(\S+)`).FindStringSubmatch(readDoc(t, "README.md"))
	if setup == nil {
		t.Fatal("no role write in the README's set-up")
	}
	if !has(setup[1], strings.Split(setup[2], ",")) {
		t.Errorf("bootstrap/users.json has no %s with %s, which the README's set-up writes", setup[1], setup[2])
	}
	example := readDoc(t, "terraform-provider-mkvault/examples/complete/main.tf")
	roles := regexp.MustCompile(`(?s)email\s+= "([^"]+)".*?projects\s+= \[([^\]]*)\]`).FindAllStringSubmatch(example, -1)
	if len(roles) < 2 {
		t.Fatalf("found %d roles in the complete example", len(roles))
	}
	for _, r := range roles {
		projects := strings.Split(strings.NewReplacer(`"`, "", " ", "").Replace(r[2]), ",")
		if !has(r[1], projects) {
			t.Errorf("bootstrap/users.json has no %s with %v, which the Terraform example writes", r[1], projects)
		}
	}
}

// The README states the minimum Vault once; no other doc names another.
func TestOneMinimumVault(t *testing.T) {
	readme := readDoc(t, "README.md")
	m := regexp.MustCompile(`Vault (1\.[0-9]+) \(LTS\) or later`).FindStringSubmatch(readme)
	if m == nil {
		t.Fatal("the README does not state the minimum Vault as \"Vault 1.N (LTS) or later\"")
	}
	// A minimum: "at least 1.N", "≥ 1.N" or "1.N or later", about Vault
	// (named in the 60 characters before it, and no other product).
	minRe := regexp.MustCompile(`(?:at\s+least\s+v?|≥\s*v?)(1\.[0-9]+)|(1\.[0-9]+)(?:\s+\(LTS\))?\s+or\s+later`)
	other := regexp.MustCompile(`(?i)terraform|opentofu|\bgo\b|openbao`)
	checked := 0
	for _, doc := range operatorDocs(t) {
		text := readDoc(t, doc)
		for _, loc := range minRe.FindAllStringSubmatchIndex(text, -1) {
			before := strings.ToLower(text[max(0, loc[0]-60):loc[0]])
			if !strings.Contains(before, "vault") || other.MatchString(before[max(0, strings.LastIndex(before, "vault")):]) {
				continue
			}
			checked++
			got := ""
			for k := 2; k < len(loc); k += 2 {
				if loc[k] >= 0 {
					got = text[loc[k]:loc[k+1]]
				}
			}
			if got != m[1] {
				t.Errorf("%s says %q: the minimum Vault is %s (README)", doc, text[loc[0]:loc[1]], m[1])
			}
		}
	}
	if checked < 2 {
		t.Errorf("found %d statements of the minimum Vault", checked)
	}
}

// release's SHA256SUMS is described as what it covers: not the OCI layout.
func TestInstallDocSumsLeaveOutTheImage(t *testing.T) {
	row := regexp.MustCompile("(?m)^\\| `vault-plugin-secrets-metakraftwerk_X\\.Y\\.Z_SHA256SUMS` \\| (.*) \\|$").FindStringSubmatch(readDoc(t, "docs/install.md"))
	if row == nil || !strings.Contains(row[1], "not of the `_oci/` layout") {
		t.Errorf("install.md's SHA256SUMS row does not say the OCI layout is outside it: %v", row)
	}
	// scripts/release_test.go checks the release's SHA256SUMS itself.
}

// configMountRe finds the default mount given as a config file's mount
// setting (`mount: metakraftwerk`, `mount = "metakraftwerk"`).
var configMountRe = regexp.MustCompile(`\bmount\s*[:=]\s*"?metakraftwerk\b`)

// The config files the docs show (Prometheus, Kubernetes manifests, HCL)
// take the mount as a variable where their format has one (HCL's
// var.mount); YAML expands none, so a line that names the default mount
// has a comment naming `<mount>` on it or in the three lines above, which
// says where the operator's mount goes. The API reference's samples are
// at the default mount by design.
func TestDocConfigSnippetsSayWhereTheMountGoes(t *testing.T) {
	if !hardCodesMount(`path: /metakraftwerk/creds/x`) || !configMountRe.MatchString(`  mount: metakraftwerk`) || !configMountRe.MatchString(`mount = "metakraftwerk"`) {
		t.Fatal("the check misses a config file's mount")
	}
	checked := 0
	for _, doc := range operatorDocs(t) {
		if doc == filepath.Join("docs", "api.md") {
			continue
		}
		for _, b := range fencedBlocks(t, doc) {
			if shellLangs[b.lang] {
				continue
			}
			lines := strings.Split(b.text, "\n")
			for i, line := range lines {
				if !hardCodesMount(line) && !configMountRe.MatchString(line) {
					continue
				}
				checked++
				if b.lang == "hcl" || b.lang == "terraform" {
					t.Errorf("%s:%d: an HCL block names the mount metakraftwerk (use var.mount or \"$MOUNT\"): %s", doc, b.line, line)
					continue
				}
				if !strings.Contains(strings.Join(lines[max(0, i-3):i+1], "\n"), "<mount>") {
					t.Errorf("%s:%d: a %s block names the mount metakraftwerk with no <mount> comment on the line or the three above it: %s", doc, b.line, b.lang, line)
				}
			}
		}
	}
	t.Logf("%d config lines name the default mount, each with a <mount> comment", checked)
}
