package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/ingest"
)

// env is one command's flags and clients.
type env struct {
	name, usage, help string
	stdout, stderr    io.Writer

	fs         *pflag.FlagSet
	kubeconfig string
	overrides  clientcmd.ConfigOverrides
	output     string

	// The journal source of the journal verbs.
	controller string
	src        ctl.Source

	cfg *rest.Config
	ns  string
}

// flags returns the command's flag set with kubectl's connection flags;
// output adds -o json|yaml, journal the journal source flags.
func (e *env) flags(output, journal bool) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubectl rollbook "+e.name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	// --help is asked for: its answer goes to standard output, as
	// kubectl's does.
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "%s\n\nusage: kubectl rollbook %s\n\nflags:\n%s", e.help, e.usage, fs.FlagUsages())
	}
	fs.StringVar(&e.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&e.overrides.CurrentContext, "context", "", "the kubeconfig context to use")
	fs.StringVarP(&e.overrides.Context.Namespace, "namespace", "n", "", "the namespace (default: the context's)")
	if output {
		fs.StringVarP(&e.output, "output", "o", "", "output format: json or yaml")
	}
	if journal {
		fs.StringVar(&e.controller, "controller", os.Getenv("ROLLBOOK_CONTROLLER"), "the Rollbook controller's HTTP address, whose journal API serves the live history, e.g. http://127.0.0.1:8080 after `kubectl -n rollbook-system port-forward svc/rollbook 8080` (env ROLLBOOK_CONTROLLER)")
		fs.StringVar(&e.src.Dir, "dir", "", "read a journal directory instead of the controller")
		fs.StringVar(&e.src.Export, "export", "", "read a `rollbook journal export` file instead of the controller")
		fs.StringVar(&e.src.NATS.URL, "nats-url", "", "read the journal's NATS JetStream stream instead of the controller")
		fs.StringVar(&e.src.NATS.CredsFile, "nats-creds", "", "NATS credentials file")
		fs.StringVar(&e.src.Stream, "stream", "ROLLBOOK", "JetStream stream name")
	}
	e.fs = fs
	return fs
}

// parse parses args; want is how many positional arguments the command
// takes (-1: zero or one).
func (e *env) parse(args []string, want int) error {
	if err := e.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	n := e.fs.NArg()
	switch {
	case want == -1 && n > 1:
		return fmt.Errorf("%w: at most one argument, got %q", errUsage, e.fs.Args())
	case want >= 0 && n != want:
		return fmt.Errorf("%w: takes %d argument(s), got %q", errUsage, want, e.fs.Args())
	}
	return ctl.CheckFormat(e.output)
}

// connect loads the kubeconfig as kubectl does and sets the namespace.
func (e *env) connect() error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = e.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &e.overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	e.cfg, e.ns = cfg, ns
	return nil
}

func (e *env) dynamic() dynamic.ResourceInterface {
	return dynamic.NewForConfigOrDie(e.cfg).Resource(ingest.Rollouts.GVR).Namespace(e.ns)
}

// rollout gets the rollout named name in the namespace.
func (e *env) rollout(ctx context.Context, name string) (*unstructured.Unstructured, error) {
	u, err := e.dynamic().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// key is a rollout's "namespace/name", as the journal names it; a name
// with a slash is taken as one already.
func (e *env) key(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	return e.ns + "/" + name
}

// source is the journal to read: the one named by --dir, --export or
// --nats-url, or the controller's journal API with the kubeconfig's
// credentials.
func (e *env) source() (ctl.Source, error) {
	if e.src.Set() {
		return e.src, nil
	}
	if e.controller == "" {
		return ctl.Source{}, fmt.Errorf("no journal to read: give --controller URL (the Rollbook controller's HTTP port, e.g. after `kubectl -n rollbook-system port-forward svc/rollbook 8080`: --controller http://127.0.0.1:8080), or a journal copy with --dir, --export or --nats-url")
	}
	// The kubeconfig's credentials, as the apiserver would get them
	// (a token, a token file, an exec plugin); its TLS settings are the
	// apiserver's, not the controller's.
	cfg := rest.CopyConfig(e.cfg)
	cfg.TLSClientConfig = rest.TLSClientConfig{}
	if cfg.BearerToken == "" && cfg.BearerTokenFile == "" && cfg.ExecProvider == nil && cfg.AuthProvider == nil {
		return ctl.Source{}, fmt.Errorf("the kubeconfig's user has no bearer token (a client certificate, say); the journal API authenticates tokens: use a context whose user has one (kubectl create token …)")
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return ctl.Source{}, err
	}
	return ctl.Source{Live: &ctl.Live{URL: e.controller, Client: &http.Client{Transport: rt}}}, nil
}

// journal connects (the namespace names the rollout) and returns the
// journal to read.
func (e *env) journal() (ctl.Source, error) {
	if err := e.connect(); err != nil {
		return ctl.Source{}, err
	}
	return e.source()
}
