package journal

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedOption tunes the server StartEmbeddedNATS starts.
type EmbeddedOption func(*server.Options)

// NATSListen makes the embedded server accept TCP clients on host:port
// (port -1: any free port; read it back with Server.ClientURL). Without it
// the server opens no listener at all and is reachable only in process.
func NATSListen(host string, port int) EmbeddedOption {
	return func(o *server.Options) {
		o.DontListen = false
		o.Host = host
		o.Port = port
	}
}

// NATSSyncAlways makes the file store fsync every message before
// acknowledging it. NB: the default acknowledges before fsync, so a crash
// of the machine can lose acknowledged messages; the outbox notices (see
// Outbox) and republishes them from the journal. SyncAlways costs two
// orders of magnitude in publish rate (GROUND.md: ~800 msg/s).
func NATSSyncAlways() EmbeddedOption {
	return func(o *server.Options) { o.SyncAlways = true }
}

// NATSServerOptions applies fn to the server options, for anything the
// other options do not cover (limits, logging, accounts).
func NATSServerOptions(fn func(*server.Options)) EmbeddedOption { return EmbeddedOption(fn) }

// StartEmbeddedNATS starts a nats-server in this process with JetStream
// keeping its file store under dir, and waits until it accepts clients. By
// default it opens no network listener: connect with ConnectNATS (or
// nats.InProcessServer). The caller shuts it down with Shutdown.
func StartEmbeddedNATS(dir string, opts ...EmbeddedOption) (*server.Server, error) {
	if dir == "" {
		return nil, errors.New("journal: embedded NATS needs a store directory")
	}
	o := &server.Options{
		ServerName: "rollbook",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true,
		NoSigs:     true, // the binary owns signal handling
		NoLog:      true,
		// NB: with no HTTPPort the monitoring endpoint stays off, and with
		// DontListen the client port is never bound, so two embedded servers
		// (tests, demo) never fight over 4222.
	}
	for _, opt := range opts {
		opt(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("journal: embedded NATS: %w", err)
	}
	if !o.NoLog {
		s.ConfigureLogger()
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("journal: embedded NATS not ready after 30s")
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, errors.New("journal: embedded NATS started without JetStream")
	}
	return s, nil
}

// NATSConfig says how to reach NATS: an external URL, or an embedded server.
type NATSConfig struct {
	// URL is one or more comma-separated server URLs of an external
	// server or cluster. When empty, Embedded is used.
	URL string
	// Embedded is a server started with StartEmbeddedNATS, reached in
	// process (no TCP).
	Embedded *server.Server
	// CredsFile is a NATS credentials file (JWT and NKey seed).
	CredsFile string
	// CAFile, CertFile and KeyFile configure TLS: a CA to verify the
	// servers, and a client certificate for mutual TLS.
	CAFile   string
	CertFile string
	KeyFile  string
	// Name is the client name servers show in their monitoring.
	Name string
	// ReconnectWait is the pause between reconnect attempts; 0 means 500ms.
	ReconnectWait time.Duration
}

// ConnectNATS connects as cfg says. The connection retries forever, also
// when the first attempt fails (it then returns a connection that is still
// reconnecting): NATS being down must never stop the controller, only delay
// the outbox. extra options are applied last.
func ConnectNATS(cfg NATSConfig, extra ...nats.Option) (*nats.Conn, error) {
	if cfg.URL == "" && cfg.Embedded == nil {
		return nil, errors.New("journal: NATS config has neither URL nor embedded server")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("journal: NATS config needs both CertFile and KeyFile, or neither")
	}
	if cfg.Name == "" {
		cfg.Name = "rollbook"
	}
	if cfg.ReconnectWait == 0 {
		cfg.ReconnectWait = 500 * time.Millisecond
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.RetryOnFailedConnect(true),
		// NB: by default two auth errors in a row close the connection for
		// good; credentials revoked and restored must not need a restart.
		nats.IgnoreAuthErrorAbort(),
	}
	url := cfg.URL
	if url == "" {
		// NB: an in-process connection cannot reconnect to a new server
		// instance; the embedded server lives and dies with this process.
		opts = append(opts, nats.InProcessServer(cfg.Embedded))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("journal: connect NATS: %w", err)
	}
	return nc, nil
}
