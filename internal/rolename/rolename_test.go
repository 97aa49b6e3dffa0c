package rolename

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// providerRule is the provider's copy of the rule, read from its source:
// the provider's module stands alone, so this module cannot import it.
func providerRule(t *testing.T) (pattern string, maxLen int) {
	t.Helper()
	file := filepath.Join("..", "..", "terraform-provider-mkvault", "internal", "rolename", "rolename.go")
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]*ast.BasicLit{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
					consts[n.Name] = lit
				}
			}
		}
	}
	if consts["Pattern"] == nil || consts["MaxLen"] == nil {
		t.Fatalf("%s: want the constants Pattern and MaxLen as literals, found %v", file, consts)
	}
	if pattern, err = strconv.Unquote(consts["Pattern"].Value); err != nil {
		t.Fatalf("%s: Pattern: %v", file, err)
	}
	if maxLen, err = strconv.Atoi(consts["MaxLen"].Value); err != nil {
		t.Fatalf("%s: MaxLen: %v", file, err)
	}
	return pattern, maxLen
}

// The provider checks a role name at plan time with its own copy of the
// rule; the copy must accept and refuse what the engine does, or a plan
// passes that the apply then fails (or a good name cannot be planned).
func TestProviderRoleNameRule(t *testing.T) {
	pattern, maxLen := providerRule(t)
	if pattern != Pattern || maxLen != MaxLen {
		t.Errorf("the provider's rule (%q, at most %d) is not the engine's (%q, at most %d)", pattern, maxLen, Pattern, MaxLen)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{
		"a": true, "Z": true, "7": true, "ci-robot": true, "a.b_c-d": true, "a..b": true,
		strings.Repeat("a", MaxLen): true, strings.Repeat("a", MaxLen+1): false,
		"": false, "-a": false, "a-": false, ".a": false, "a.": false, "_a": false, "a_": false,
		"a b": false, "a/b": false, "a\n": false, "\na": false, "a\x00b": false, "rölle": false, "a*": false,
	}
	for name, want := range names {
		engine := Re.MatchString(name) && len(name) <= MaxLen
		provider := re.MatchString(name) && len(name) <= maxLen
		if engine != want || provider != want {
			t.Errorf("name %q: the engine accepts it: %v, the provider: %v; want %v", name, engine, provider, want)
		}
	}
}
