// Command hikkoshi-p2v-agent runs on a physical server booted into a live Linux
// (PXE) and serves its disks, read-only, to a converter worker, which fetches them
// in verified, resumable chunks (a P2V job's p2v_source.agent_url). Build it
// static: CGO_ENABLED=0 go build ./services/converter/cmd/hikkoshi-p2v-agent.
//
//	hikkoshi-p2v-agent --listen 10.0.0.5:7420 --disk /dev/sda --token-file /run/p2v-token
//	hikkoshi-p2v-agent --listen 10.0.0.5:7420 --disk /dev/sda \
//	  --tls-cert agent.pem --tls-key agent-key.pem --tls-ca ca.pem   # mutual TLS: only the converter's certificate
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v/agent"
)

type disks []string

func (d *disks) String() string     { return strings.Join(*d, ",") }
func (d *disks) Set(v string) error { *d = append(*d, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hikkoshi-p2v-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hikkoshi-p2v-agent", flag.ContinueOnError)
	var ds disks
	listen := fs.String("listen", "", "address to serve on (the live system's address on the conversion network)")
	fs.Var(&ds, "disk", "a disk to serve, read-only (a block device or an image file); repeat for each disk")
	chunk := fs.Int64("chunk-bytes", agent.DefaultChunkSize, "chunk size: the unit of verification and retry")
	tokenFile := fs.String("token-file", "", "file holding the bearer token clients must send (required without TLS; never logged)")
	var tf mtls.Files
	fs.StringVar(&tf.Cert, "tls-cert", "", "the agent's certificate (for its address): serve mutual TLS")
	fs.StringVar(&tf.Key, "tls-key", "", "its key")
	fs.StringVar(&tf.CA, "tls-ca", "", "the CA bundle that issues the converter workers' certificates")
	allow := fs.String("allow", "converter", "with TLS: comma-separated client identities (certificate common names) served")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || len(ds) == 0 {
		return errors.New("--listen and at least one --disk are required")
	}
	if *tokenFile == "" && !tf.Set() {
		return errors.New("--token-file, or --tls-cert/--tls-key/--tls-ca, is required: without either, whoever reaches the agent reads the server's disks")
	}
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("--token-file %s is empty", *tokenFile)
		}
	}
	var h *agent.Handler
	var tlsCfg *tls.Config
	var err error
	if tf.Set() {
		if tlsCfg, err = mtls.ServerConfig(tf); err != nil {
			return err
		}
		h, err = agent.NewTLSHandler(ds, *chunk, token, strings.Split(*allow, ","))
	} else {
		h, err = agent.NewHandler(ds, *chunk, token)
	}
	if err != nil {
		return err
	}
	defer h.Close()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h.Log = log.Warn
	// A client that stops reading gives its chunk slot back within WriteTimeout;
	// one that never sends its headers is dropped after ReadHeaderTimeout.
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		TLSConfig: tlsCfg}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	log.Info("serving disks read-only", "listen", *listen, "disks", ds.String(), "chunk_bytes", *chunk, "mutual_tls", tlsCfg != nil)
	if tlsCfg != nil {
		err = srv.ListenAndServeTLS("", "")
	} else {
		err = srv.ListenAndServe()
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
