// Command ferretdb runs FerretDB v1.24 (MongoDB wire protocol over SQLite or PostgreSQL) for fraudlake's
// dev, tests and CI. `go install .../cmd/ferretdb@v1.24.2` builds a binary that panics at start
// (its version file is not in the module zip, upstream issue #2982), so this tiny main module
// embeds the library instead. Started and stopped by `python -m fraudlake.services`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data-dir", "data", "directory for the SQLite databases (created if missing)")
	logLevel := flag.String("log-level", "error", "log level: debug, info, warn or error (warn logs every error reply)")
	pragmas := flag.String("sqlite-pragmas", "synchronous(normal)",
		"comma-separated extra SQLite pragmas (FerretDB adds busy_timeout, WAL, auto_vacuum)")
	handler := flag.String("handler", "sqlite", "storage backend: sqlite (files in -data-dir) or postgresql")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL for -handler=postgresql, e.g. postgres://user@127.0.0.1:55432/ferretdb")
	ping := flag.Bool("ping", false, "send {ping: 1} to -listen-addr and exit 0 when it answers ok (a health check)")
	flag.Parse()

	if *ping {
		if err := pingServer(*listen, 5*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb: ping %s: %v\n", *listen, err)
			os.Exit(1)
		}
		return
	}

	if err := run(*listen, *dataDir, *logLevel, *pragmas, *handler, *pgURL); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}

func run(listen, dataDir, logLevel, pragmas, handler, pgURL string) error {
	if handler != "sqlite" && handler != "postgresql" {
		return fmt.Errorf("handler %q: want sqlite or postgresql", handler)
	}
	if handler == "postgresql" && pgURL == "" {
		return fmt.Errorf("handler postgresql needs -postgresql-url")
	}

	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", dataDir, err)
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir %q: %w", dir, err)
	}
	if !strings.HasSuffix(dir, "/") {
		dir += "/"
	}

	var level slog.Level
	if err = level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("log level %q: %w", logLevel, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	query := url.Values{}
	for _, p := range strings.Split(pragmas, ",") {
		if p = strings.TrimSpace(p); p != "" {
			query.Add("_pragma", p)
		}
	}
	sqliteURL := "file:" + dir
	if len(query) > 0 {
		sqliteURL += "?" + query.Encode()
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: listen},
		Handler:       handler,
		SQLiteURL:     sqliteURL,
		PostgreSQLURL: pgURL,
		Logger:        logger,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	where := dir
	if handler == "postgresql" {
		where = pgURL
	}
	fmt.Fprintf(os.Stderr, "ferretdb: listening on %s, %s backend, data in %s\n", listen, handler, where)
	return f.Run(ctx)
}
