package metakraftwerk

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
)

// The tests in this file keep the docs true to the code: docs/api.md
// against the paths' schemas and operations, docs/troubleshooting.md
// against the messages the code can build and the statuses it answers with.

// The API reference and the OpenAPI document describe one API: every path
// and field the engine has is in docs/api.md, and api.md names no path or
// parameter the engine does not have.
func TestAPIDocMatchesOpenAPI(t *testing.T) {
	var doc struct {
		Paths map[string]struct {
			Parameters []struct{ Name string } `json:"parameters"`
			// A LIST's query parameters (after, limit) are its GET's.
			Get struct {
				Parameters []struct{ Name string } `json:"parameters"`
			} `json:"get"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "openapi.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	api := readDoc(t, "docs/api.md")

	engine := map[string]bool{} // documented form: /metakraftwerk/roles/:name
	fields := map[string]bool{}
	for p, item := range doc.Paths {
		documented := "/metakraftwerk" + regexp.MustCompile(`\{(\w+)\}`).ReplaceAllString(strings.TrimSuffix(p, "/"), ":$1")
		engine[documented] = true
		if !strings.Contains(api, "`"+documented+"`") {
			t.Errorf("docs/api.md lacks the path %s", documented)
		}
		for _, prm := range append(item.Parameters, item.Get.Parameters...) {
			if prm.Name != "list" {
				fields[prm.Name] = true
			}
		}
	}
	for _, schema := range doc.Components.Schemas {
		for f := range schema.Properties {
			fields[f] = true
			if !strings.Contains(api, "`"+f+"`") {
				t.Errorf("docs/api.md lacks the field %s", f)
			}
		}
	}
	for _, s := range apiSections(t) {
		for _, row := range s.methods {
			if !engine[row.path] {
				t.Errorf("docs/api.md documents %s, which the engine does not have", row.path)
			}
		}
		for _, prm := range s.params {
			if !fields[prm.name] {
				t.Errorf("docs/api.md documents the parameter %s, which the engine does not have", prm.name)
			}
		}
	}
}

// Every method row of docs/api.md is an operation of its path, and every
// operation of every path has its row.
func TestAPIDocMethodsMatchOperations(t *testing.T) {
	paths := newBackend(time.Now).Paths
	documented := map[string]bool{} // "POST /metakraftwerk/config"
	rows := 0
	for _, s := range apiSections(t) {
		for _, row := range s.methods {
			rows++
			documented[row.method+" "+row.path] = true
			p := pathFor(t, paths, row.path)
			if p == nil {
				continue
			}
			if !slicesContainsAny(methodsOf(p), row.method) {
				t.Errorf("docs/api.md (%s): %s %s, but the path answers only %v", s.title, row.method, row.path, methodsOf(p))
			}
		}
	}
	if rows < 10 {
		t.Fatalf("found only %d method rows in docs/api.md", rows)
	}
	for _, p := range paths {
		docPath := "/metakraftwerk/" + strings.TrimSuffix(strings.TrimSuffix(strings.ReplaceAll(p.Pattern, namePattern, ":name"), "$"), "/?")
		for _, m := range methodsOf(p) {
			if !documented[m+" "+docPath] {
				t.Errorf("docs/api.md has no row for %s %s", m, docPath)
			}
		}
	}
}

// Every parameter line of docs/api.md, "- `name` `(type: default)` – text",
// states the schema's type and default, and its text is the field's
// Description (which the code builds from the limits it enforces), so a
// wrong default, range or limit fails here. Backticks and trailing links
// are the doc's own formatting.
func TestAPIDocParametersMatchSchemas(t *testing.T) {
	paths := newBackend(time.Now).Paths
	checked := 0
	for _, s := range apiSections(t) {
		if len(s.params) == 0 {
			continue
		}
		if len(s.methods) == 0 {
			t.Errorf("docs/api.md (%s): parameters without a method table", s.title)
			continue
		}
		p := pathFor(t, paths, s.methods[0].path)
		if p == nil {
			continue
		}
		for _, prm := range s.params {
			fs, ok := p.Fields[prm.name]
			if !ok {
				t.Errorf("docs/api.md (%s): %s is not a field of %s", s.title, prm.name, s.methods[0].path)
				continue
			}
			checked++
			if problem := checkTypeAndDefault(prm, fs); problem != "" {
				t.Errorf("docs/api.md (%s): `%s` `(%s: %s)`: %s", s.title, prm.name, prm.typ, prm.def, problem)
			}
			// api.md starts the text in lower case, as Vault's API docs do.
			if got, want := docText(prm.text), strings.Join(strings.Fields(fs.Description), " "); !strings.EqualFold(got[:1], want[:1]) || got[1:] != want[1:] {
				t.Errorf("docs/api.md (%s): the text of %s is not its field description\n doc:  %s\n code: %s", s.title, prm.name, got, want)
			}
		}
	}
	if checked < 15 {
		t.Fatalf("checked only %d parameters", checked)
	}
}

var docTypes = map[string][]framework.FieldType{
	"string":          {framework.TypeString},
	"duration":        {framework.TypeDurationSecond},
	"int":             {framework.TypeInt},
	"bool":            {framework.TypeBool},
	"list of strings": {framework.TypeCommaStringSlice, framework.TypeStringSlice},
}

// checkTypeAndDefault compares a parameter line's type and default with
// the field's schema; it returns the problem, or "".
func checkTypeAndDefault(prm apiParam, fs *framework.FieldSchema) string {
	types, ok := docTypes[prm.typ]
	if !ok {
		return "unknown type " + prm.typ
	}
	if !slicesContainsAny(types, fs.Type) {
		return fmt.Sprintf("the field is a %s", fs.Type)
	}
	switch prm.def {
	case "<required>":
		if !fs.Required {
			return "the field is not required"
		}
		return ""
	case "<required on create>":
		if fs.Required || fs.Default != nil || !strings.Contains(fs.Description, "Required on create") {
			return "the field's schema does not say it is required on create only"
		}
		return ""
	}
	if fs.Required {
		return "the field is required"
	}
	var docDefault, codeDefault any
	var err error
	switch fs.Type {
	case framework.TypeString:
		docDefault, err = strconv.Unquote(prm.def)
		codeDefault = ""
		if fs.Default != nil {
			codeDefault = fs.Default
		}
	case framework.TypeDurationSecond:
		docDefault, err = parseutil.ParseDurationSecond(strings.Trim(prm.def, `"`))
		codeDefault = time.Duration(0)
		if fs.Default != nil {
			codeDefault, _ = parseutil.ParseDurationSecond(fs.Default)
		}
	case framework.TypeInt:
		docDefault, err = strconv.Atoi(prm.def)
		codeDefault = 0
		if fs.Default != nil {
			codeDefault = fs.Default
		}
	case framework.TypeBool:
		docDefault, err = strconv.ParseBool(prm.def)
		codeDefault = false
		if fs.Default != nil {
			codeDefault = fs.Default
		}
	default:
		if prm.def != "[]" || fs.Default != nil {
			return fmt.Sprintf("the default is %v", fs.Default)
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("default %s: %v", prm.def, err)
	}
	if fmt.Sprint(docDefault) != fmt.Sprint(codeDefault) {
		return fmt.Sprintf("the default is %v", codeDefault)
	}
	return ""
}

// docText is a doc paragraph as plain text: no backticks, links reduced to
// their text, a trailing parenthesised link dropped, spaces collapsed.
func docText(s string) string {
	s = regexp.MustCompile(`\s*\(\[[^\]]*\]\([^)]*\)\)`).ReplaceAllString(s, "")
	s = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(s, "$1")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "`", "")), " ")
}

// apiSection is one "## " section of docs/api.md: its method table and
// its parameter list.
type apiSection struct {
	title   string
	methods []struct{ method, path string }
	params  []apiParam
}

type apiParam struct{ name, typ, def, text string }

func apiSections(t *testing.T) []apiSection {
	t.Helper()
	var out []apiSection
	rowRe := regexp.MustCompile("^\\| `([A-Z]+)` +\\| `([^`]+)` +\\|")
	paramRe := regexp.MustCompile("^- `([a-z_]+)` `\\(([a-z ]+): (.+)\\)` – (.*)$")
	var cur *apiParam
	for _, line := range strings.Split(readDoc(t, "docs/api.md"), "\n") {
		if strings.HasPrefix(line, "## ") {
			out = append(out, apiSection{title: strings.TrimPrefix(line, "## ")})
			cur = nil
			continue
		}
		if len(out) == 0 {
			continue
		}
		s := &out[len(out)-1]
		if m := rowRe.FindStringSubmatch(line); m != nil {
			s.methods = append(s.methods, struct{ method, path string }{m[1], m[2]})
		}
		switch m := paramRe.FindStringSubmatch(line); {
		case m != nil:
			s.params = append(s.params, apiParam{name: m[1], typ: m[2], def: m[3], text: m[4]})
			cur = &s.params[len(s.params)-1]
		case cur != nil && strings.HasPrefix(line, "  "):
			cur.text += " " + strings.TrimSpace(line)
		default:
			cur = nil
		}
	}
	return out
}

// pathFor is the path whose pattern serves a documented path.
func pathFor(t *testing.T, paths []*framework.Path, documented string) *framework.Path {
	t.Helper()
	sample := strings.ReplaceAll(strings.TrimPrefix(documented, "/metakraftwerk/"), ":name", "ci")
	for _, p := range paths {
		if regexp.MustCompile("^(?:" + strings.TrimSuffix(p.Pattern, "$") + ")$").MatchString(sample) {
			return p
		}
	}
	t.Errorf("docs/api.md: no path serves %s", documented)
	return nil
}

// methodsOf lists the HTTP methods a path answers, as api.md writes them.
func methodsOf(p *framework.Path) []string {
	var out []string
	for op := range p.Operations {
		switch op {
		case logical.ReadOperation:
			out = append(out, "GET")
		case logical.CreateOperation, logical.UpdateOperation:
			out = append(out, "POST")
		case logical.ListOperation:
			out = append(out, "LIST")
		case logical.DeleteOperation:
			out = append(out, "DELETE")
		}
	}
	sort.Strings(out)
	return out
}

func slicesContainsAny[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Every error text the engine can build is in docs/troubleshooting.md: the
// longest fixed part of each message, with the limits and field names the
// code puts in rendered, must appear there. Messages are found in the
// source, so a new one fails this test until it is documented, and a
// changed limit fails until the doc says the new one.
func TestTroubleshootingCoversEveryError(t *testing.T) {
	doc := readDoc(t, "docs/troubleshooting.md")
	msgs := ownMessages(t)
	if len(msgs) < 40 {
		t.Fatalf("found only %d error messages in the source", len(msgs))
	}
	for _, m := range msgs {
		if frag := m.longestRun(); !strings.Contains(doc, frag) {
			t.Errorf("docs/troubleshooting.md lacks %q (%s)", frag, m.pos)
		}
	}
}

// Every message docs/troubleshooting.md quotes is one the code can build:
// each stretch of a quote between its placeholders (<name>, …) is the
// text of one message, or messages and values joined where the code puts
// one into another (a %s, a %w). The server's own messages are looked up
// in the SDK's source the same way.
func TestTroubleshootingQuotesOnlyWhatTheCodeSays(t *testing.T) {
	sources := loadMessageSources(t)
	quotes := troubleshootingQuotes(t)
	if len(quotes) < 60 {
		t.Fatalf("found only %d quoted messages in docs/troubleshooting.md", len(quotes))
	}
	for _, q := range quotes {
		for _, frag := range quoteFragments(q.text) {
			if !sources.canBuild(frag) {
				t.Errorf("docs/troubleshooting.md (%s) quotes %q, which no message in the code builds", q.section, frag)
			}
		}
	}
}

// Each error a representative request gets is documented under the status
// it is answered with: its text matches a quote in docs/troubleshooting.md
// whose row or heading names that status. The requests cover every status
// the page has a heading or row for.
func TestTroubleshootingStatuses(t *testing.T) {
	quotes := troubleshootingQuotes(t)
	type scenario struct {
		name string
		run  func(t *testing.T) (*logical.Response, error)
	}
	role := func(extra map[string]any) map[string]any {
		data := map[string]any{fieldEmail: testEmail, fieldPassword: testPassword, fieldVerify: false}
		for k, v := range extra {
			data[k] = v
		}
		return data
	}
	write := func(path string, data map[string]any) func(t *testing.T) (*logical.Response, error) {
		return func(t *testing.T) (*logical.Response, error) {
			return newTestBackend(t).do(logical.UpdateOperation, path, data)
		}
	}
	rejected := func(t *testing.T) *testEnv {
		env := newTestBackend(t)
		env.mustWrite("roles/ci", role(map[string]any{fieldPassword: "not-the-password"}))
		env.secrets = append(env.secrets, "not-the-password")
		env.do(logical.ReadOperation, "creds/ci", nil)
		return env
	}
	scenarios := []scenario{
		{"ttl over max_ttl", write("roles/ci", role(map[string]any{fieldTTL: "2h", fieldMaxTTL: "1h"}))},
		{"negative ttl", write("roles/ci", role(map[string]any{fieldTTL: "-5"}))},
		{"unknown field", write("roles/ci", role(map[string]any{"max_tll": "1h"}))},
		{"max_retries out of range", write("config", map[string]any{fieldMaxRetries: 11})},
		{"sub-second request_timeout", write("config", map[string]any{fieldRequestTimeout: "500ms"})},
		{"unknown role", func(t *testing.T) (*logical.Response, error) {
			return newTestBackend(t).do(logical.ReadOperation, "creds/nope", nil)
		}},
		{"remembered rejection", func(t *testing.T) (*logical.Response, error) {
			return rejected(t).do(logical.ReadOperation, "creds/ci", nil)
		}},
		{"verify-role while a rejection is remembered", func(t *testing.T) (*logical.Response, error) {
			return rejected(t).do(logical.UpdateOperation, "verify-role/ci", nil)
		}},
		{"a project the login cannot use", write("roles/ci", role(map[string]any{fieldVerify: true, fieldProjects: "NOT_MINE"}))},
		{"create of a role created meanwhile", func(t *testing.T) (*logical.Response, error) {
			env := newTestBackend(t)
			env.createRole("ci", nil)
			resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.CreateOperation,
				Path: "roles/ci", Storage: env.storage, Data: role(nil)})
			env.record(resp, err)
			return resp, err
		}},
		{"a write that lost the race", func(t *testing.T) (*logical.Response, error) {
			env := newTestBackend(t)
			gate := env.gateLogins()
			env.createRole("ci", nil)
			reached, release := gate.arm(nil)
			done, result := env.doAsync(logical.UpdateOperation, "roles/ci", map[string]any{fieldProjects: "CI_PROJECT"})
			<-reached
			env.mustWrite("roles/ci", map[string]any{fieldTTL: "5m"})
			release()
			<-done
			return result()
		}},
		{"no answer within max_upstream_time", func(t *testing.T) (*logical.Response, error) {
			env := newTestBackend(t)
			env.createRole("ci", nil)
			env.mustWrite("config", map[string]any{fieldMaxUpstreamTime: "1s"})
			env.mk.SetFaults(devserver.Faults{Mode: devserver.ModeHang})
			return env.do(logical.ReadOperation, "creds/ci", nil)
		}},
		{"storage fails", func(t *testing.T) (*logical.Response, error) {
			env := newTestBackend(t)
			env.createRole("ci", nil)
			env.storage.Underlying().FailGet(true)
			return env.do(logical.ReadOperation, "roles/ci", nil)
		}},
	}
	for _, tt := range upstreamFailures {
		scenarios = append(scenarios, scenario{"upstream: " + tt.name, func(t *testing.T) (*logical.Response, error) {
			_, resp, err := tt.read(t)
			return resp, err
		}})
	}

	statuses, ran := map[int]bool{}, 0
	t.Run("scenarios", func(t *testing.T) {
		var mu sync.Mutex
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				resp, err := sc.run(t)
				status, msg := statusOf(resp, err), errorText(resp, err)
				if status == http.StatusOK {
					t.Fatalf("the request succeeded")
				}
				mu.Lock()
				statuses[status] = true
				ran++
				mu.Unlock()
				// A role write's verify step prefixes its step's name.
				bare := strings.TrimPrefix(msg, "verify: ")
				var under []string
				for _, q := range quotes {
					if quoteMatches(q.text, msg) || quoteMatches(q.text, bare) {
						if slicesContainsAny(q.statuses, status) {
							return
						}
						under = append(under, fmt.Sprintf("%v in %s", q.statuses, q.section))
					}
				}
				if len(under) == 0 {
					t.Errorf("docs/troubleshooting.md has no quote for %q", msg)
				} else {
					t.Errorf("%q is answered with %d, but docs/troubleshooting.md documents it under %s", msg, status, strings.Join(under, "; "))
				}
			})
		}
	})
	// Every status the page documents was met (when every scenario ran).
	if ran < len(scenarios) {
		return
	}
	for _, q := range quotes {
		for _, st := range q.statuses {
			if st != http.StatusOK && st != http.StatusServiceUnavailable && !statuses[st] {
				t.Errorf("no scenario answers %d (documented in %s)", st, q.section)
				statuses[st] = true
			}
		}
	}
}

// msgPattern is a message the code builds: literal runs, and between two
// runs a place where a value or another message goes in.
type msgPattern struct {
	pos  string
	runs []string
}

func (m msgPattern) longestRun() string {
	best := ""
	for _, r := range m.runs {
		r = strings.TrimFunc(r, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(`:;,.()"'`, r) })
		if len(r) > len(best) {
			best = r
		}
	}
	return best
}

// ownMessages are the messages of this module's packages.
func ownMessages(t *testing.T) []msgPattern {
	t.Helper()
	return newMessageParser(t, ".", "internal/mkclient").messages
}

// messageSources gathers what a quoted message can be built of: the
// module's messages, the SDK's and parseutil's (the server's own
// validation texts), every string the module's code holds (MetaKraftwerk's
// known messages, error names, field names), HTTP status texts and numbers.
type messageSources struct {
	runs   []string
	values map[string]bool
}

func loadMessageSources(t *testing.T) *messageSources {
	t.Helper()
	own := newMessageParser(t, ".", "internal/mkclient")
	s := &messageSources{values: own.literals}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/hashicorp/vault/sdk", "github.com/hashicorp/go-secure-stdlib/parseutil").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	dirs := strings.Fields(string(out))
	sdk := newMessageParser(t, filepath.Join(dirs[0], "framework"), dirs[1])
	for _, m := range append(own.messages, sdk.messages...) {
		for _, r := range m.runs {
			if r != "" {
				s.runs = append(s.runs, r)
				s.values[r] = true
			}
		}
	}
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			s.values[text] = true
		}
	}
	return s
}

var numberRe = regexp.MustCompile(`^[0-9]+$`)

// canBuild reports whether frag is a stretch of one message, or a suffix
// of one run, whole runs and values, and a prefix of a run, joined where
// the code joins them.
func (s *messageSources) canBuild(frag string) bool {
	n := len(frag)
	for _, r := range s.runs {
		if strings.Contains(r, frag) {
			return true
		}
	}
	// at[i]: frag[:i] is built, ending where a run ends.
	at := make([]bool, n+1)
	for i := 1; i <= n; i++ {
		if piece := frag[:i]; s.values[piece] || numberRe.MatchString(piece) {
			at[i] = true
			continue
		}
		for _, r := range s.runs {
			if strings.HasSuffix(r, frag[:i]) {
				at[i] = true
				break
			}
		}
	}
	for i := 1; i < n; i++ {
		if !at[i] {
			continue
		}
		for _, r := range s.runs {
			if strings.HasPrefix(r, frag[i:]) {
				return true
			}
		}
		for j := i + 1; j <= n; j++ {
			if piece := frag[i:j]; s.values[piece] || numberRe.MatchString(piece) {
				at[j] = true
			}
		}
	}
	return at[n]
}

// messageParser finds the messages built in a set of package directories
// and every string literal in them. Constants the code passes (field
// names, limits, formatDuration of a limit) are rendered into the text.
type messageParser struct {
	t        *testing.T
	fset     *token.FileSet
	consts   map[string]map[string]ast.Expr // package name → constant → expression
	messages []msgPattern
	literals map[string]bool
}

func newMessageParser(t *testing.T, dirs ...string) *messageParser {
	t.Helper()
	mp := &messageParser{t: t, fset: token.NewFileSet(), consts: map[string]map[string]ast.Expr{}, literals: map[string]bool{}}
	var files []*ast.File
	for _, dir := range dirs {
		names, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(mp.fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
			pkg := mp.consts[f.Name.Name]
			if pkg == nil {
				pkg = map[string]ast.Expr{}
				mp.consts[f.Name.Name] = pkg
			}
			for _, decl := range f.Decls {
				if g, ok := decl.(*ast.GenDecl); ok && g.Tok == token.CONST {
					for _, spec := range g.Specs {
						vs := spec.(*ast.ValueSpec)
						for i, id := range vs.Names {
							if i < len(vs.Values) {
								pkg[id.Name] = vs.Values[i]
							}
						}
					}
				}
			}
		}
	}
	for _, f := range files {
		mp.parseFile(f)
	}
	sort.Slice(mp.messages, func(i, j int) bool { return mp.messages[i].pos < mp.messages[j].pos })
	return mp
}

func (mp *messageParser) parseFile(f *ast.File) {
	pkg := f.Name.Name
	ast.Inspect(f, func(n ast.Node) bool {
		if l, ok := n.(*ast.BasicLit); ok && l.Kind == token.STRING {
			if s, err := strconv.Unquote(l.Value); err == nil && s != "" {
				mp.literals[s] = true
			}
		}
		return true
	})
	for _, decl := range f.Decls {
		fn, _ := decl.(*ast.FuncDecl)
		inErrorText := fn != nil && ((fn.Name.Name == "Error" && fn.Recv != nil) ||
			fn.Name.Name == "Describe" || strings.HasPrefix(fn.Name.Name, "describe"))
		ast.Inspect(decl, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.KeyValueExpr: // field descriptions are not errors
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Description" {
					return false
				}
			case *ast.ReturnStmt:
				if inErrorText {
					for _, r := range n.Results {
						mp.addText(pkg, r)
					}
				}
			case *ast.CallExpr:
				switch callName(n) {
				case "errors.New", "fmt.Errorf", "logical.ErrorResponse", "fmt.Sprintf", "errwrap.Wrapf":
					mp.addFormat(pkg, nil, n.Args[0], n.Args[1:])
				case "logical.CodedError", "fmt.Fprintf":
					if len(n.Args) > 1 {
						mp.addFormat(pkg, nil, n.Args[1], n.Args[2:])
					}
				case "p.add":
					if len(n.Args) > 1 {
						mp.addFormat(pkg, n.Args[0], n.Args[1], n.Args[2:])
					}
				case "b.WriteString":
					if inErrorText {
						mp.addText(pkg, n.Args[0])
					}
				}
			}
			return true
		})
	}
}

// addFormat records a format call's message; field, when set, is the
// field name p.add puts in front.
func (mp *messageParser) addFormat(pkg string, field, format ast.Expr, args []ast.Expr) {
	v, ok := mp.eval(pkg, format, 0)
	if !ok || v.Kind() != constant.String {
		return
	}
	var runs []string
	cur := ""
	if field != nil {
		if s, ok := mp.render(pkg, field, "%s"); ok {
			cur = s + ": "
		} else {
			runs = append(runs, "")
			cur = ": "
		}
	}
	text := constant.StringVal(v)
	verbs := regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)
	last, arg := 0, 0
	for _, loc := range verbs.FindAllStringIndex(text, -1) {
		cur += text[last:loc[0]]
		last = loc[1]
		verb := text[loc[0]:loc[1]]
		if verb == "%%" {
			cur += "%"
			continue
		}
		var a ast.Expr
		if arg < len(args) {
			a = args[arg]
		}
		arg++
		if a != nil {
			if s, ok := mp.render(pkg, a, verb); ok {
				cur += s
				continue
			}
		}
		if strings.HasSuffix(verb, "q") { // the quotes are the code's text
			runs, cur = append(runs, cur+`"`), `"`
		} else {
			runs, cur = append(runs, cur), ""
		}
	}
	runs = append(runs, cur+text[last:])
	if strings.TrimSpace(strings.Join(runs, "")) == "" {
		return
	}
	mp.messages = append(mp.messages, msgPattern{pos: mp.fset.Position(format.Pos()).String(), runs: runs})
}

// addText records a string expression an error text is written from:
// literals and constants, joined by + to values the code computes.
func (mp *messageParser) addText(pkg string, e ast.Expr) {
	var runs []string
	cur := ""
	var walk func(e ast.Expr)
	walk = func(e ast.Expr) {
		if b, ok := e.(*ast.BinaryExpr); ok && b.Op == token.ADD {
			walk(b.X)
			walk(b.Y)
			return
		}
		if v, ok := mp.eval(pkg, e, 0); ok && v.Kind() == constant.String {
			cur += constant.StringVal(v)
			return
		}
		runs, cur = append(runs, cur), ""
	}
	walk(e)
	runs = append(runs, cur)
	if strings.TrimSpace(strings.Join(runs, "")) == "" {
		return
	}
	mp.messages = append(mp.messages, msgPattern{pos: mp.fset.Position(e.Pos()).String(), runs: runs})
}

// render is what the code prints for a constant argument, or false when
// the argument is not a constant.
func (mp *messageParser) render(pkg string, e ast.Expr, verb string) (string, bool) {
	if call, ok := e.(*ast.CallExpr); ok && len(call.Args) == 1 {
		if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "formatDuration" {
			if v, ok := mp.eval(pkg, call.Args[0], 0); ok && v.Kind() == constant.Int {
				n, _ := constant.Int64Val(v)
				return formatDuration(time.Duration(n)), true
			}
			return "", false
		}
	}
	v, ok := mp.eval(pkg, e, 0)
	if !ok {
		return "", false
	}
	switch {
	case v.Kind() == constant.String && strings.HasSuffix(verb, "q"):
		return strconv.Quote(constant.StringVal(v)), true
	case v.Kind() == constant.String && (verb == "%s" || verb == "%v"):
		return constant.StringVal(v), true
	case v.Kind() == constant.Int && (verb == "%d" || verb == "%v"):
		return v.ExactString(), true
	}
	return "", false
}

// eval evaluates a constant expression of the parsed packages (and the
// time package's units); false when it is not one.
func (mp *messageParser) eval(pkg string, e ast.Expr, depth int) (constant.Value, bool) {
	if depth > 20 {
		return nil, false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		v := constant.MakeFromLiteral(e.Value, e.Kind, 0)
		return v, v.Kind() != constant.Unknown
	case *ast.ParenExpr:
		return mp.eval(pkg, e.X, depth+1)
	case *ast.Ident:
		if x, ok := mp.consts[pkg][e.Name]; ok {
			return mp.eval(pkg, x, depth+1)
		}
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		if !ok {
			return nil, false
		}
		if x.Name == "time" {
			units := map[string]time.Duration{"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond,
				"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute, "Hour": time.Hour}
			if u, ok := units[e.Sel.Name]; ok {
				return constant.MakeInt64(int64(u)), true
			}
		}
		if c, ok := mp.consts[x.Name][e.Sel.Name]; ok {
			return mp.eval(x.Name, c, depth+1)
		}
	case *ast.BinaryExpr:
		a, ok1 := mp.eval(pkg, e.X, depth+1)
		b, ok2 := mp.eval(pkg, e.Y, depth+1)
		if !ok1 || !ok2 {
			return nil, false
		}
		switch e.Op {
		case token.SHL, token.SHR:
			s, _ := constant.Uint64Val(b)
			return constant.Shift(a, e.Op, uint(s)), true
		case token.QUO:
			if a.Kind() == constant.Int && b.Kind() == constant.Int {
				return constant.BinaryOp(a, token.QUO_ASSIGN, b), true
			}
		}
		if a.Kind() != b.Kind() {
			return nil, false
		}
		return constant.BinaryOp(a, e.Op, b), true
	case *ast.CallExpr: // conversions: int(x), time.Duration(x)
		if len(e.Args) == 1 {
			switch fn := e.Fun.(type) {
			case *ast.Ident:
				if fn.Name == "int" || fn.Name == "int64" || fn.Name == "string" {
					return mp.eval(pkg, e.Args[0], depth+1)
				}
			case *ast.SelectorExpr:
				if x, ok := fn.X.(*ast.Ident); ok && x.Name == "time" && fn.Sel.Name == "Duration" {
					return mp.eval(pkg, e.Args[0], depth+1)
				}
			}
		}
	}
	return nil, false
}

func callName(call *ast.CallExpr) string {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	if x, ok := sel.X.(*ast.Ident); ok {
		return x.Name + "." + sel.Sel.Name
	}
	return ""
}

// docQuote is one quoted message of docs/troubleshooting.md: a backticked
// text in a table's "text" column, with the statuses it is documented
// under (the row's status column, else the nearest heading's).
type docQuote struct {
	text     string
	section  string
	statuses []int
}

func troubleshootingQuotes(t *testing.T) []docQuote {
	t.Helper()
	return troubleshootingQuotesFrom(t, readDoc(t, "docs/troubleshooting.md"))
}

func troubleshootingQuotesFrom(t testing.TB, doc string) []docQuote {
	t.Helper()
	var out []docQuote
	var h2, h3 string
	textCol, statusCol := -1, -1
	statusRe := regexp.MustCompile(`\b[1-5][0-9][0-9]\b`)
	headingStatuses := func() []int {
		for _, h := range []string{h3, h2} {
			var codes []int
			for _, m := range statusRe.FindAllString(h, -1) {
				n, _ := strconv.Atoi(m)
				codes = append(codes, n)
			}
			if len(codes) > 0 || h == h3 && h3 != "" {
				if len(codes) == 0 {
					codes = []int{http.StatusOK} // warnings on success
				}
				return codes
			}
		}
		return nil
	}
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			h2, h3 = line, ""
			continue
		case strings.HasPrefix(line, "### "):
			h3 = line
			continue
		case !strings.HasPrefix(line, "|"):
			textCol, statusCol = -1, -1
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if textCol < 0 { // the header row
			for i, c := range cells {
				switch c {
				case "text":
					textCol = i
				case "status":
					statusCol = i
				}
			}
			continue
		}
		if textCol >= len(cells) || strings.HasPrefix(cells[0], "---") {
			continue
		}
		statuses := headingStatuses()
		if statusCol >= 0 && statusCol < len(cells) {
			n, _ := strconv.Atoi(cells[statusCol])
			statuses = []int{n}
		}
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cells[textCol], -1) {
			out = append(out, docQuote{text: m[1], section: strings.TrimLeft(h2, "# ") + " › " + strings.TrimLeft(h3, "# "), statuses: statuses})
		}
	}
	return out
}

var placeholderRe = regexp.MustCompile(`<[^<>]+>|…`)

// quoteFragments are the stretches of a quote between its placeholders
// that say something (not only spaces and punctuation).
func quoteFragments(q string) []string {
	var out []string
	for _, f := range placeholderRe.Split(q, -1) {
		f = strings.TrimSpace(f)
		if strings.IndexFunc(f, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) >= 0 {
			out = append(out, f)
		}
	}
	return out
}

// quoteMatches reports whether a message is what a quote describes: its
// placeholders stand for any text.
func quoteMatches(quote, msg string) bool {
	parts := placeholderRe.Split(quote, -1)
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `.*`) + `$`).MatchString(msg)
}

// placeholderPatterns are what a placeholder of docs/troubleshooting.md
// may stand for in a text the engine emitted: typed values only. The
// ones not named here (<reason>, <category>, …) stand for another
// documented text.
var placeholderPatterns = map[string]string{
	"<name>": `[A-Za-z0-9][A-Za-z0-9_.-]*`, "<n>": `[0-9]+`, "<m>": `[0-9]+`, "<hex>": `[0-9A-F]{4,6}`,
	"<status>": `[0-9]{3}`, "<3xx>": `3[0-9]{2}`, "<400, 403 or 422>": `(?:400|403|422)`,
	"<Name>": `[A-Z][A-Za-z]+`, "<message>": `[A-Za-z0-9 '()-]+`, "<status text>": `[A-Za-z0-9 '()-]+`,
	"<time>": `[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z`,
	"<d>":    `[0-9][0-9hmsµn.]*`, "<ttl>": `[0-9][0-9hmsµn.]*`, "<max>": `[0-9][0-9hmsµn.]*`, "<leeway>": `[0-9][0-9hmsµn.]*`,
	"<host>": `(?:[a-z0-9.-]+|\[[0-9a-f:]+\])(?::[0-9]+)?`, "<scheme>": `https?`, "<step>": `(?:login|list projects)`,
}

// templates compiles every quote of docs/troubleshooting.md into a pattern
// whose typed placeholders match only their type.
func templates(t testing.TB) []*regexp.Regexp {
	t.Helper()
	var out []*regexp.Regexp
	for _, q := range troubleshootingQuotesFrom(t, readDocTB(t, "docs/troubleshooting.md")) {
		var b strings.Builder
		last := 0
		for _, loc := range placeholderRe.FindAllStringIndex(q.text, -1) {
			b.WriteString(regexp.QuoteMeta(q.text[last:loc[0]]))
			if p, ok := placeholderPatterns[q.text[loc[0]:loc[1]]]; ok {
				b.WriteString(p)
			} else {
				b.WriteString(`.*`)
			}
			last = loc[1]
		}
		b.WriteString(regexp.QuoteMeta(q.text[last:]))
		out = append(out, regexp.MustCompile(`^(?:verify: )?`+b.String()+`$`))
	}
	return out
}

// documented reports whether msg is one of the documented texts.
func documented(tmpls []*regexp.Regexp, msg string) bool {
	for _, re := range tmpls {
		if re.MatchString(msg) {
			return true
		}
	}
	return false
}

// The README's policies are the files the demo and the e2e suite write,
// with the README's $MOUNT where the files say metakraftwerk, below the
// files' note on the mount.
func TestReadmePoliciesAreTheBootstrapFiles(t *testing.T) {
	readme := readDoc(t, "README.md")
	found := regexp.MustCompile(`(?s)vault policy write ([a-z-]+) - <<EOF\n(.*?)\n *EOF\n`).FindAllStringSubmatch(readme, -1)
	if len(found) < 2 {
		t.Fatalf("found %d policies in README.md", len(found))
	}
	for _, m := range found {
		var lines []string
		for _, line := range strings.Split(m[2], "\n") {
			lines = append(lines, strings.TrimPrefix(line, "   "))
		}
		file := readDoc(t, filepath.Join("bootstrap", "policies", m[1]+".hcl"))
		note, policy, ok := strings.Cut(file, "\n\n")
		if !ok || !strings.Contains(note, "At another mount") {
			t.Errorf("bootstrap/policies/%s.hcl does not start with its note on the mount", m[1])
		}
		got := strings.ReplaceAll(strings.Join(lines, "\n"), `path "$MOUNT/`, `path "metakraftwerk/`)
		if got != strings.TrimSpace(policy) {
			t.Errorf("README.md's policy %s is not bootstrap/policies/%s.hcl:\n%s", m[1], m[1], got)
		}
	}
}

// Every relative link in the README and docs/ reaches a file, and its
// #anchor a heading of that file (as GitHub spells heading anchors).
func TestDocLinksResolve(t *testing.T) {
	docs, _ := filepath.Glob("docs/*.md")
	docs = append(docs, "README.md", "SECURITY.md", "CHANGELOG.md")
	linkRe := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(file string) map[string]bool {
		if a, ok := anchors[file]; ok {
			return a
		}
		a := map[string]bool{}
		data, _ := os.ReadFile(file)
		inFence := false
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
			}
			if inFence || !strings.HasPrefix(line, "#") {
				continue
			}
			h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
			h = regexp.MustCompile(`[^\p{L}\p{N} _-]`).ReplaceAllString(h, "")
			a[strings.ReplaceAll(h, " ", "-")] = true
		}
		anchors[file] = a
		return a
	}
	for _, doc := range docs {
		for _, m := range linkRe.FindAllStringSubmatch(readDoc(t, doc), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, frag, _ := strings.Cut(link, "#")
			file := doc
			if target != "" {
				file = filepath.Join(filepath.Dir(doc), target)
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, link)
				continue
			}
			if frag != "" && strings.HasSuffix(file, ".md") && !anchorsOf(file)[frag] {
				t.Errorf("%s links to %s, but %s has no heading #%s", doc, link, file, frag)
			}
		}
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	return readDocTB(t, path)
}

func readDocTB(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// A fenced block marked `<!-- file: PATH -->` shows the file at PATH as it
// is, so that the docs show what the tests run.
func TestDocsShowFilesAsTheyAre(t *testing.T) {
	marker := regexp.MustCompile("(?s)<!-- file: ([^ ]+) -->\n```[a-z]*\n(.*?)```\n")
	seen := 0
	for _, doc := range []string{"README.md", "docs/terraform.md", "docs/operations.md", "docs/install.md"} {
		for _, m := range marker.FindAllStringSubmatch(readDoc(t, doc), -1) {
			seen++
			if want := readDoc(t, m[1]); m[2] != want {
				t.Errorf("%s shows %s otherwise than the file is", doc, m[1])
			}
		}
	}
	if seen == 0 {
		t.Fatal("no block marked <!-- file: … --> in the docs")
	}
}

// The shipped Agent unit stops the exec service with Agent: Agent does not
// stop it when it gives up (e2e TestAgentExecGivesUp), systemd does, with
// KillMode=control-group, and starts Agent again. systemd-analyze, where
// installed, checks that systemd reads the unit as written.
func TestAgentUnitStopsTheService(t *testing.T) {
	const path = "bootstrap/agent/metakraftwerk-agent.service"
	unit := readDoc(t, path)
	settings := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{"KillMode": "control-group", "Restart": "always"} {
		if settings[k] != want {
			t.Errorf("%s: %s=%q, want %q", path, k, settings[k], want)
		}
	}
	if !strings.Contains(settings["ExecStart"], " agent -config=") {
		t.Errorf("%s: ExecStart=%q does not run Agent", path, settings["ExecStart"])
	}
	for _, doc := range []string{"docs/operations.md", "bootstrap/agent/exec.hcl.tmpl"} {
		if !strings.Contains(readDoc(t, doc), "metakraftwerk-agent.service") {
			t.Errorf("%s does not point to %s", doc, path)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the unit's syntax is not checked")
		return
	}
	// ExecStart must name an executable that exists here.
	dir := t.TempDir()
	copyUnit := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(copyUnit, []byte(strings.Replace(unit, "/usr/local/bin/vault", "/bin/true", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", copyUnit)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	// User= names a user this machine need not have; anything else is a
	// finding.
	var findings []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "my-service") {
			findings = append(findings, line)
		}
	}
	if len(findings) > 0 || (err != nil && len(out) == 0) {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}
