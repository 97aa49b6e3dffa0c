// Command metakraftwerk-devserver runs a stand-in MetaKraftwerk server on
// loopback for demos, tests and benchmarks. See internal/devserver.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/devserver"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// userFlags collects repeated -user email:password[:PROJECT,PROJECT] flags.
type userFlags []devserver.User

func (u *userFlags) String() string { return fmt.Sprintf("%d users", len(*u)) }

func (u *userFlags) Set(v string) error {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return errors.New("want email:password[:PROJECT,PROJECT]")
	}
	user := devserver.User{Email: parts[0], Password: parts[1]}
	if len(parts) == 3 && parts[2] != "" {
		user.Projects = strings.Split(parts[2], ",")
	}
	*u = append(*u, user)
	return nil
}

func main() {
	var users userFlags
	listen := flag.String("listen", "127.0.0.1:8787", "address to listen on (loopback by default; port 0 picks a free port)")
	allowRemote := flag.Bool("allow-non-loopback", false, "allow -listen on a non-loopback address")
	usersFile := flag.String("users-file", "", `JSON file: [{"id":1,"email":"…","password":"…","projects":["DEMO_PROJECT"]}]`)
	flag.Var(&users, "user", "a user as email:password[:PROJECT,PROJECT] (repeatable; a password containing ':' needs -users-file)")
	lifetime := flag.Duration("token-lifetime", devserver.DefaultTokenLifetime, "lifetime of issued tokens")
	latency := flag.Duration("latency", 0, "added latency per login and API request")
	failRate := flag.Float64("fail-rate", 0, "fraction (0..1) of logins answered with -fail-status")
	failStatus := flag.Int("fail-status", http.StatusServiceUnavailable, "status for -fail-rate")
	rateLimit := flag.Int("rate-limit-next", 0, "answer the first N logins with 429")
	retryAfter := flag.Int("retry-after", 1, "Retry-After seconds sent with 429 and 503")
	addrFile := flag.String("addr-file", "", "write the listening address (host:port) to this file once serving")
	quiet := flag.Bool("quiet", false, "do not log requests")
	paginate := flag.String("paginate", "", `answer the project list in Feathers pages: "default[,max]", e.g. "10,50" (off by default)`)
	flag.Parse()

	if *usersFile != "" {
		data, err := os.ReadFile(*usersFile)
		if err != nil {
			log.Fatalf("reading -users-file: %v", err)
		}
		var fromFile []devserver.User
		if err := json.Unmarshal(data, &fromFile); err != nil {
			log.Fatalf("parsing -users-file: %v", err)
		}
		users = append(fromFile, users...)
	}
	if len(users) == 0 {
		log.Fatal("no users: pass -user email:password[:PROJECTS] or -users-file")
	}
	host := *listen
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if !*allowRemote && !mkclient.IsLoopbackHost(strings.Trim(host, "[]")) {
		log.Fatalf("-listen %s is not a loopback address; pass -allow-non-loopback to insist", *listen)
	}

	logger := log.New(os.Stderr, "metakraftwerk-devserver: ", log.LstdFlags|log.Lmicroseconds)
	cfg := devserver.Config{Users: users, TokenLifetime: *lifetime, Logger: logger}
	if *paginate != "" {
		p, err := devserver.ParsePaginate(*paginate)
		if err != nil {
			log.Fatal(err)
		}
		cfg.Paginate = p
	}
	if *quiet {
		cfg.Logger = nil
	}
	srv, err := devserver.Listen(*listen, cfg)
	if err != nil {
		log.Fatal(err)
	}
	srv.SetFaults(devserver.Faults{
		Latency: devserver.Duration(*latency), FailRate: *failRate, FailStatus: *failStatus,
		RateLimitNext: *rateLimit, RetryAfter: *retryAfter,
	})
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(srv.Addr()+"\n"), 0o600); err != nil {
			log.Fatal(err)
		}
	}
	logger.Printf("serving MetaKraftwerk stand-in on %s (%d users, tokens live %s); control API under %s", srv.URL, len(users), *lifetime, devserver.ControlPrefix)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	done := make(chan struct{})
	go func() { _ = srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}
