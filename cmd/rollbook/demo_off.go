//go:build nodemo

package main

import (
	"context"
	"errors"
)

// demoCmd in a production build (-tags nodemo, as the container image is
// built): the demo needs the test harness, which such a build does not
// link.
func demoCmd(context.Context, []string) error {
	return errors.New("this build has no demo (built with -tags nodemo, as the container image is): run it from a checkout with go run ./cmd/rollbook demo")
}
