package actuator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"syscall"
	"time"
)

// Analysis checks make the controller send requests to URLs a rollout's
// author wrote, and put what they select in the rollout's status and the
// journal, which that author can read. So the measurer is a guarded
// client: it never connects to a link-local address (where clouds serve
// instance metadata and credentials), whatever the name resolved to, and
// when the operator lists the hosts analyses may reach
// (Options.AnalysisHosts), it reaches no other, redirects included.

// errEgress marks a request the guard refused: the check itself is wrong
// (verdict Invalid), not the service it measures.
var errEgress = errors.New("not allowed")

func newMeasureClient(hosts []string) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: refuseLinkLocal}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy would connect for us, past the guard
	tr.DialContext = dialer.DialContext
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			return allowedHost(hosts, req.URL)
		},
	}
}

// allowedHost checks u's host against the operator's list: an entry is a
// host name or IP, which allows any port, or host:port.
func allowedHost(hosts []string, u *url.URL) error {
	if len(hosts) == 0 || slices.Contains(hosts, u.Host) || slices.Contains(hosts, u.Hostname()) {
		return nil
	}
	return fmt.Errorf("analysis host %s is %w (--analysis-allowed-hosts %v)", u.Host, errEgress, hosts)
}

func refuseLinkLocal(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast()) {
		return fmt.Errorf("link-local address %s (instance metadata) is %w for analysis checks", host, errEgress)
	}
	return nil
}
