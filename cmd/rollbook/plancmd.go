package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"rollbook.dev/rollbook/ctl"
)

// planCmd is a dry run: which pods a rollout would update, in which batch
// and why, against the live cluster (read only: lists) or a journal.
// Nothing is written anywhere.
func planCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	file := fs.String("f", "", "the InPlaceRollout manifest (YAML or JSON)")
	src := sourceFlags(fs)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "plan against this cluster (when no journal source is given)")
	kubeContext := fs.String("context", "", "the kubeconfig context to use")
	namespace := fs.String("n", "", "the rollout's namespace, when its manifest names none (default: default)")
	output := fs.String("o", "", "output format: json or yaml (default: a table)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		return errors.New("usage: rollbook plan -f rollout.yaml [-n NAMESPACE] [--dir JOURNAL | --kubeconfig FILE --context NAME] [-o json|yaml]")
	}
	if err := ctl.CheckFormat(*output); err != nil {
		return err
	}
	u, err := ctl.ReadRollout(*file)
	if err != nil {
		return err
	}
	if u.GetNamespace() == "" {
		u.SetNamespace(*namespace)
	}
	if u.GetNamespace() == "" {
		u.SetNamespace("default")
	}
	var f ctl.Folded
	var from string
	if s := src.source(); s.Set() {
		f, err = ctl.FoldSource(ctx, s)
		from = s.Describe()
	} else {
		cfg, cerr := kubeConfig(*kubeconfig, *kubeContext)
		if cerr != nil {
			return cerr
		}
		f, err = ctl.FoldCluster(ctx, dynamic.NewForConfigOrDie(cfg), u.GetNamespace())
		from = "cluster " + cfg.Host
	}
	if err != nil {
		return err
	}
	res, err := ctl.Preview(f, u)
	if err != nil {
		return err
	}
	return ctl.PrintPlan(os.Stdout, *output, from, f.State, res)
}

// kubeConfig loads a kubeconfig as kubectl does (the file, or $KUBECONFIG
// and ~/.kube/config), in the context named, or the in-cluster
// configuration when neither is given and there is no kubeconfig.
func kubeConfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	if kubeconfig == "" && kubeContext == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}
