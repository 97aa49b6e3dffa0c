package metakraftwerk

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The API reference and the OpenAPI document describe one API: every path
// and field the engine has is in docs/api.md, and api.md names no path or
// parameter the engine does not have.
func TestAPIDocMatchesOpenAPI(t *testing.T) {
	var doc struct {
		Paths map[string]struct {
			Parameters []struct{ Name string } `json:"parameters"`
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
		for _, prm := range item.Parameters {
			fields[prm.Name] = true
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

	// What api.md names: the method tables' paths and the parameter lists.
	for _, m := range regexp.MustCompile("(?m)^\\| `(?:GET|POST|LIST|DELETE)` +\\| `([^`]+)`").FindAllStringSubmatch(api, -1) {
		if !engine[m[1]] {
			t.Errorf("docs/api.md documents %s, which the engine does not have", m[1])
		}
	}
	params := regexp.MustCompile("(?m)^- `([a-z_]+)` `\\(").FindAllStringSubmatch(api, -1)
	if len(params) < 15 {
		t.Fatalf("found only %d parameters in docs/api.md", len(params))
	}
	for _, m := range params {
		if !fields[m[1]] {
			t.Errorf("docs/api.md documents the parameter %s, which the engine does not have", m[1])
		}
	}
}

// Every error text the engine can return is in docs/troubleshooting.md: the
// longest fixed part of each message (between its formatting verbs) must
// appear there. Messages are found in the source, so a new one fails this
// test until it is documented.
func TestTroubleshootingCoversEveryError(t *testing.T) {
	doc := readDoc(t, "docs/troubleshooting.md")
	msgs := errorMessages(t, ".", "internal/mkclient")
	if len(msgs) < 40 {
		t.Fatalf("found only %d error messages in the source", len(msgs))
	}
	for _, m := range msgs {
		if frag := fixedPart(m.text); !strings.Contains(doc, frag) {
			t.Errorf("docs/troubleshooting.md lacks %q (%s)", frag, m.pos)
		}
	}
}

type sourceMessage struct{ text, pos string }

// errorMessages returns the format strings of every message the packages
// in dirs build for a caller: errors.New, fmt.Errorf, fmt.Sprintf,
// logical.ErrorResponse, logical.CodedError, the field problems (p.add),
// and what the error types' Error methods and the describe helpers write.
func errorMessages(t *testing.T, dirs ...string) []sourceMessage {
	t.Helper()
	var out []sourceMessage
	fset := token.NewFileSet()
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			add := func(lit ast.Expr) {
				if b, ok := lit.(*ast.BinaryExpr); ok {
					lit = b.X
				}
				if l, ok := lit.(*ast.BasicLit); ok && l.Kind == token.STRING {
					if s, err := strconv.Unquote(l.Value); err == nil && strings.TrimSpace(s) != "" {
						out = append(out, sourceMessage{s, fset.Position(l.Pos()).String()})
					}
				}
			}
			for _, decl := range f.Decls {
				fn, _ := decl.(*ast.FuncDecl)
				inErrorText := fn != nil && ((fn.Name.Name == "Error" && fn.Recv != nil) ||
					fn.Name.Name == "tlsProblem" || strings.HasPrefix(fn.Name.Name, "describe"))
				ast.Inspect(decl, func(n ast.Node) bool {
					switch n := n.(type) {
					case *ast.KeyValueExpr: // field descriptions are not errors
						if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Description" {
							return false
						}
					case *ast.ReturnStmt:
						if inErrorText {
							for _, r := range n.Results {
								add(r)
							}
						}
					case *ast.CallExpr:
						switch callName(n) {
						case "errors.New", "fmt.Errorf", "logical.ErrorResponse", "fmt.Sprintf":
							add(n.Args[0])
						case "logical.CodedError", "p.add", "fmt.Fprintf":
							if len(n.Args) > 1 {
								add(n.Args[1])
							}
						case "b.WriteString":
							if inErrorText {
								add(n.Args[0])
							}
						}
					}
					return true
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pos < out[j].pos })
	return out
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

// fixedPart is the longest run of a format string between its verbs,
// trimmed of spaces and punctuation at its ends.
func fixedPart(format string) string {
	best := ""
	for _, part := range regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`).Split(format, -1) {
		part = strings.TrimFunc(part, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(`:;,.()"'`, r) })
		if len(part) > len(best) {
			best = part
		}
	}
	return best
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
