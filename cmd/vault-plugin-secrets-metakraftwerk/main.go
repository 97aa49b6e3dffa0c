// Command vault-plugin-secrets-metakraftwerk serves the MetaKraftwerk
// secrets engine to Vault over the plugin protocol.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	metakraftwerk "github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk"
	"github.com/metakraftwerk/vault-plugin-secrets-metakraftwerk/internal/mkclient"
)

// pprofEnv, when set in the plugin's environment (vault plugin register
// -env=METAKRAFTWERK_PLUGIN_PPROF_ADDR=127.0.0.1:6061), serves Go's pprof
// handlers on that loopback address for profiling. Off by default.
const pprofEnv = "METAKRAFTWERK_PLUGIN_PPROF_ADDR"

// logLevelEnvs name the plugin's log level, first found wins: its own
// (vault plugin register -env=METAKRAFTWERK_LOG_LEVEL=debug), then the
// server's, which a plugin inherits when the server's environment sets it.
var logLevelEnvs = []string{"METAKRAFTWERK_LOG_LEVEL", "VAULT_LOG_LEVEL", "BAO_LOG_LEVEL"}

// logLevel is the level the plugin logs at: info unless logLevelEnvs say
// otherwise. The server cannot tell a plugin its level, and a line below
// the server's level still crosses the plugin's stderr and is parsed by
// the server before it is dropped, so debug lines (one per fresh login and
// per revoked lease) are written only when asked for.
func logLevel() hclog.Level {
	for _, env := range logLevelEnvs {
		if l := hclog.LevelFromString(os.Getenv(env)); l != hclog.NoLevel {
			return l
		}
	}
	return hclog.Info
}

// libraryLine is what the plugin logs in place of a line a library wrote
// to Go's standard logger.
const libraryLine = "a library wrote a log line of its own; its text is not shown, as it may quote what MetaKraftwerk sent"

// silenceStdLog routes Go's standard logger, which the plugin itself never
// uses, to a fixed line at debug. Libraries write there on their own:
// net/http quotes up to 4 KiB of what an upstream sent on an idle
// connection ("Unsolicited response received on idle HTTP channel starting
// with ..."), and http2 its frames under GODEBUG=http2debug. The plugin's
// stderr is the server's log, so those bytes (a password or token an
// upstream echoes) would reach it; only the engine decides what is logged.
func silenceStdLog(logger hclog.Logger) {
	log.SetFlags(0)
	log.SetPrefix("")
	log.SetOutput(libraryLog{logger})
}

// libraryLog drops what it is given and logs libraryLine instead.
type libraryLog struct{ logger hclog.Logger }

func (l libraryLog) Write(p []byte) (int, error) {
	l.logger.Debug(libraryLine)
	return len(p), nil
}

func main() {
	logger := hclog.New(&hclog.LoggerOptions{Level: logLevel(), Output: os.Stderr, JSONFormat: true})
	silenceStdLog(logger)
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(logger, err)
	}
	if addr := os.Getenv(pprofEnv); addr != "" {
		if err := servePprof(addr); err != nil {
			fatal(logger, err)
		}
	}
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: metakraftwerk.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
		Logger:             logger,
	}); err != nil {
		fatal(logger, err)
	}
}

func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !mkclient.IsLoopbackHost(host) {
		return fmt.Errorf("%s=%q: must be a loopback host:port", pprofEnv, addr)
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", pprofEnv, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return nil
}

func fatal(logger hclog.Logger, err error) {
	logger.Error("plugin shutting down", "error", err)
	os.Exit(1)
}
