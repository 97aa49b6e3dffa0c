// Command scale is `make bench-scale`: what many roles cost, measured on
// the demo's stack (stand-in MetaKraftwerk + a Vault or OpenBao dev server
// with the plugin, on loopback) while the mount grows to 100,000 roles.
//
// At each step (10, 10,000 and 100,000 roles) it measures the role write
// rate, a plain LIST and a KV v1 LIST of as many keys (time, size, the
// plugin's RSS added), the detailed LIST paged through (time, size), a
// creds read's p50 (a fresh login, and a shared token), the plugin's RSS
// and live heap (after a GC its pprof endpoint runs), and the default
// scrape's size. At 100,000 roles it also
// reads creds for 2,000 roles with a shared token and 2,000 without (the
// memory each adds) and reloads the plugin (the time until a creds read
// answers again). With -before <plugin binary> it then switches the mount
// to that binary (say, main's) and measures its LIST on the same roles.
//
// The writes go four at a time and the reads one at a time: the machine's
// other work gets its share, and a read's latency is its own.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/bench/internal/localstack"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/loadgen"
)

const (
	mount   = "metakraftwerk"
	email   = "team-a-ci@example.com"
	passwd  = "demo-team-a-password" //nolint:gosec // G101: the stand-in's demo user (bootstrap/users.json)
	writers = 4
	reads   = 300
	// perRoleReads is how many roles of each kind are read for the memory
	// a role's state costs.
	perRoleReads = 2000
)

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 5 * time.Minute}

type stack struct {
	addr, token, dir, cli string
	// plugin is the command of the plugin in force.
	plugin string
	// pprof is the address of the plugin's pprof endpoint.
	pprof string
}

func main() {
	repo := flag.String("repo", ".", "the repository (bin/ built)")
	out := flag.String("out", ".bench", "directory for the results file")
	stepsFlag := flag.String("steps", "10,10000,100000", "role counts to measure at")
	before := flag.String("before", "", "another plugin binary to measure LIST with at the last step (e.g. main's)")
	flag.Parse()
	var steps []int
	for _, s := range strings.Split(*stepsFlag, ",") {
		n, err := strconv.Atoi(s)
		must(err)
		steps = append(steps, n)
	}

	st, down := bringUp(*repo)
	defer down()
	must(st.post("sys/mounts/kv1", `{"type":"kv","options":{"version":"1"}}`))

	var b strings.Builder
	fmt.Fprintf(&b, "# make bench-scale, %s\n\n%s; %s, %d CPUs\n\n", time.Now().UTC().Format(time.RFC3339), serverVersion(st), cpuModel(), numCPU())
	b.WriteString("| roles | write rate (roles/s) | LIST | LIST size | LIST adds RSS | KV v1 LIST | detailed LIST, all pages | detailed size | creds p50 fresh | creds p50 shared | plugin RSS | live heap | scrape | metakraftwerk_ series |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	written := 0
	var p50s []time.Duration
	for _, n := range steps {
		rate := writeRoles(st, written, n)
		written = n
		settle()
		rssBefore := st.rss()
		listT, listSize := timeList(st, mount+"/roles")
		listRSS := st.rss() - rssBefore
		kvT, _ := timeList(st, "kv1/k")
		detT, detSize, pages := pageDetailed(st)
		fresh, shared := readP50(st, "scale-000001"), readP50(st, "scale-000000")
		p50s = append(p50s, fresh)
		scrape, series := scrape(st)
		heap := heapOf(st)
		row := fmt.Sprintf("| %d | %.0f | %s | %s | %s | %s | %s (%d pages) | %s | %s | %s | %s | %s | %s | %d |\n",
			n, rate, ms(listT), kib(listSize), mib(listRSS), ms(kvT), ms(detT), pages, kib(detSize), ms(fresh), ms(shared), mib(st.rss()), mib(heap), kib(int64(scrape)), series)
		b.WriteString(row)
		log.Print(strings.TrimSpace(row))
	}
	if len(p50s) > 1 {
		fmt.Fprintf(&b, "\nA fresh creds read's p50 at %d roles is %+.1f %% of its p50 at %d roles.\n",
			steps[len(steps)-1], 100*(float64(p50s[len(p50s)-1])/float64(p50s[0])-1), steps[0])
	}

	// What a role's runtime state costs: a shared token held (even
	// roles, reuse_tokens) and a fresh login's status only (odd roles).
	perKind := min(perRoleReads, written/2-2)
	b.WriteString("\n| at " + strconv.Itoa(written) + " roles, " + strconv.Itoa(perKind) + " roles each | RSS per role | live heap per role |\n| --- | ---: | ---: |\n")
	for _, kind := range []struct {
		name  string
		first int
	}{{"read once, shared token held", 2}, {"read once, no shared token", 3}} {
		settle()
		r0, h0 := st.rss(), heapOf(st)
		for i := range perKind {
			must(st.get(fmt.Sprintf("%s/creds/scale-%06d", mount, kind.first+2*i)))
		}
		settle()
		r1, h1 := st.rss(), heapOf(st)
		fmt.Fprintf(&b, "| %s | %d B | %d B |\n", kind.name, (r1-r0)/int64(perKind), (h1-h0)/int64(perKind))
	}
	size, _ := scrape(st)
	fmt.Fprintf(&b, "\nThe default scrape after those reads: %s.\n", kib(int64(size)))

	// The plugin's start with the roles stored: reload, then the first
	// creds read and the first LIST.
	t0 := time.Now()
	st.reload()
	reloaded := time.Since(t0)
	for st.get(mount+"/creds/scale-000001") != nil {
		time.Sleep(10 * time.Millisecond)
	}
	firstRead := time.Since(t0)
	firstList, _ := timeList(st, mount+"/roles")
	fmt.Fprintf(&b, "\nPlugin reload with %d roles stored: the reload answered in %s, the first creds read after %s, then a LIST took %s; plugin RSS %s.\n",
		written, ms(reloaded), ms(firstRead), ms(firstList), mib(st.rss()))

	if *before != "" {
		b.WriteString(measureBefore(st, *before, written))
	}

	must(os.MkdirAll(*out, 0o755))
	file := filepath.Join(*out, "scale-"+time.Now().UTC().Format("20060102T150405Z")+".md")
	must(os.WriteFile(file, []byte(b.String()), 0o644))
	fmt.Print(b.String())
	log.Printf("written to %s", file)
}

// measureBefore switches the mount to another plugin binary, on the same
// roles, and measures its LIST as above.
func measureBefore(st *stack, bin string, roles int) string {
	data, err := os.ReadFile(bin)
	must(err)
	sum := sha256.Sum256(data)
	dst := filepath.Join(st.dir, "plugins", "metakraftwerk-before")
	must(os.WriteFile(dst, data, 0o755))
	must(st.post("sys/plugins/catalog/secret/"+mount, fmt.Sprintf(`{"sha256":%q,"command":"metakraftwerk-before","version":"v0.0.1-before"}`, hex.EncodeToString(sum[:]))))
	must(st.post("sys/mounts/"+mount+"/tune", `{"plugin_version":"v0.0.1-before"}`))
	st.plugin = "metakraftwerk-before"
	st.reload()
	for st.get(mount+"/config") != nil {
		time.Sleep(10 * time.Millisecond)
	}
	settle()
	r0 := st.rss()
	t1, size := timeList(st, mount+"/roles")
	r1 := st.rss()
	t2, _ := timeList(st, mount+"/roles")
	return fmt.Sprintf("\nThe same %d roles, the plugin of -before (%s): LIST %s (again %s), %s, RSS %s → %s (+%s).\n",
		roles, filepath.Base(bin), ms(t1), ms(t2), kib(size), mib(r0), mib(r1), mib(r1-r0))
}

// writeRoles writes roles from..to-1, even ones with reuse_tokens, and as
// many KV v1 keys; it answers the role write rate.
func writeRoles(st *stack, from, to int) float64 {
	if to <= from {
		return 0
	}
	start := time.Now()
	inParallel(from, to, func(i int) {
		body := fmt.Sprintf(`{"email":%q,"password":%q,"verify":false,"reuse_tokens":%t}`, email, passwd, i%2 == 0)
		must(st.post(fmt.Sprintf("%s/roles/scale-%06d", mount, i), body))
	})
	rate := float64(to-from) / time.Since(start).Seconds()
	inParallel(from, to, func(i int) { must(st.post(fmt.Sprintf("kv1/k/scale-%06d", i), `{"v":"x"}`)) })
	return rate
}

// inParallel calls do for each of from..to-1, writers at a time.
func inParallel(from, to int, do func(i int)) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < to; i = int(next.Add(1) - 1) {
				do(i)
			}
		}()
	}
	wg.Wait()
}

// timeList is the median of three LISTs and the answer's size.
func timeList(st *stack, path string) (time.Duration, int64) {
	var times []time.Duration
	var size int64
	for range 3 {
		t0 := time.Now()
		body, code, err := st.do("LIST", path, "")
		if err != nil || (code != 200 && code != 404) {
			log.Fatalf("LIST %s: %d %v", path, code, err)
		}
		times = append(times, time.Since(t0))
		size = int64(len(body))
	}
	slices.Sort(times)
	return times[1], size
}

// pageDetailed pages through the detailed LIST, 1,000 roles a page.
func pageDetailed(st *stack) (time.Duration, int64, int) {
	var size int64
	pages := 0
	after := ""
	t0 := time.Now()
	for {
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		body, code, err := st.do("LIST", mount+"/roles?"+q.Encode(), "")
		if code == 404 {
			break
		}
		if err != nil || code != 200 {
			log.Fatalf("detailed LIST: %d %v %s", code, err, body)
		}
		var r struct {
			Data struct {
				Keys []string `json:"keys"`
			} `json:"data"`
		}
		must(json.Unmarshal(body, &r))
		if len(r.Data.Keys) == 0 {
			break
		}
		size += int64(len(body))
		pages++
		after = r.Data.Keys[len(r.Data.Keys)-1]
	}
	return time.Since(t0), size, pages
}

// readP50 is the p50 of sequential creds reads of one role, after one
// read that warms it.
func readP50(st *stack, role string) time.Duration {
	must(st.get(mount + "/creds/" + role))
	r := loadgen.Run(1, reads, func() error { return st.get(mount + "/creds/" + role) })
	if r.Errors > 0 {
		log.Fatalf("%d creds reads of %s failed", r.Errors, role)
	}
	return r.Percentile(0.5)
}

// scrape answers the default scrape's size and its metakraftwerk_ series.
func scrape(st *stack) (int, int) {
	body, code, err := st.do(http.MethodGet, mount+"/metrics", "")
	if err != nil || code != 200 {
		log.Fatalf("scrape: %d %v", code, err)
	}
	series := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "metakraftwerk_") {
			series++
		}
	}
	return len(body), series
}

// heapOf is the plugin's live heap: HeapAlloc right after a GC that the
// plugin's pprof endpoint runs (?gc=1).
func heapOf(st *stack) int64 {
	resp, err := client.Get("http://" + st.pprof + "/debug/pprof/heap?gc=1&debug=1")
	must(err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	log.Fatal("the plugin's heap profile has no HeapAlloc")
	return 0
}

// settle lets the plugin settle before a sample.
func settle() { time.Sleep(time.Second) }

func (st *stack) do(method, path, body string) ([]byte, int, error) {
	req, _ := http.NewRequest(method, st.addr+"/v1/"+path, strings.NewReader(body))
	req.Header.Set("X-Vault-Token", st.token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func (st *stack) post(path, body string) error { return st.expect(http.MethodPost, path, body) }
func (st *stack) get(path string) error        { return st.expect(http.MethodGet, path, "") }

func (st *stack) expect(method, path, body string) error {
	b, code, err := st.do(method, path, body)
	if err != nil {
		return err
	}
	if code >= 300 {
		return fmt.Errorf("%s %s: HTTP %d %s", method, path, code, bytes.TrimSpace(b))
	}
	return nil
}

// reload restarts the plugin's process with the server's CLI.
func (st *stack) reload() {
	cmd := exec.Command(st.cli, "plugin", "reload", "-plugin="+mount)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+st.addr, "VAULT_TOKEN="+st.token, "BAO_ADDR="+st.addr, "BAO_TOKEN="+st.token)
	if out, err := cmd.CombinedOutput(); err != nil {
		log.Fatalf("plugin reload: %v %s", err, out)
	}
}

func (st *stack) rss() int64 {
	pids := loadgen.PIDs(filepath.Join(st.dir, "plugins", st.plugin))
	if len(pids) == 0 {
		return -1
	}
	n, _ := loadgen.RSS(pids[0])
	return n
}

func bringUp(repo string) (*stack, func()) {
	dir, err := os.MkdirTemp("", "metakraftwerk-scale.")
	must(err)
	// The plugin inherits the server's environment: its pprof endpoint
	// gives the live heap after a GC.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	pprof := ln.Addr().String()
	_ = ln.Close()
	ls, down, err := localstack.Up(repo, dir, "METAKRAFTWERK_PLUGIN_PPROF_ADDR="+pprof)
	if err != nil {
		log.Fatal(err)
	}
	return &stack{dir: dir, plugin: "vault-plugin-secrets-metakraftwerk", pprof: pprof,
			addr: ls.Env["VAULT_ADDR"], token: ls.Env["VAULT_TOKEN"], cli: ls.Env["METAKRAFTWERK_CLI"]}, func() {
			down()
			_ = os.RemoveAll(dir)
		}
}

func serverVersion(st *stack) string {
	out, err := exec.Command(st.cli, "version").Output()
	if err != nil {
		return st.cli
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func kib(n int64) string        { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }
func mib(n int64) string        { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
