package leakcheck

import (
	"encoding/base64"
	"html"
	"net/url"
	"strings"
	"testing"
)

func TestFindsEverySpelling(t *testing.T) {
	secret := "pw@ 1/&=<>\u2028\x7f-Zq8"
	for name, text := range map[string]string{
		"as it is":     "x" + secret + "y",
		"url":          "login?password=" + url.QueryEscape(secret),
		"html":         "<p>" + html.EscapeString(secret) + "</p>",
		"json":         `{"password":"pw@ 1/\u0026=\u003c\u003e\u2028` + "\x7f" + `-Zq8"}`,
		"base64":       base64.StdEncoding.EncodeToString([]byte(secret)),
		"no controls":  "pw@ 1/&=<>-Zq8",
		"a first half": "password starts " + secret[:len(secret)/2] + "…",
	} {
		if leaks := Find(text, []string{"other-secret-xyz", secret}); len(leaks) != 1 || leaks[0].Secret != 1 {
			t.Errorf("%s: %v", name, leaks)
		}
	}
	if leaks := Find("nothing to see here", []string{secret}); len(leaks) != 0 {
		t.Errorf("found %v in a clean text", leaks)
	}
	for _, f := range Forms(secret) {
		if strings.Contains(f.Name, secret) {
			t.Errorf("form name %q quotes the secret", f.Name)
		}
	}
}

func TestShortSecretsHaveNoPrefixForm(t *testing.T) {
	for _, f := range Forms("short-pw") {
		if f.Name == "its first half" {
			t.Fatal("a short secret's half is a form")
		}
	}
}
