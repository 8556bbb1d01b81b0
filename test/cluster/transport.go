package cluster

import (
	"crypto/tls"
	"net/http"
)

// insecureTransport talks to components' self-signed loopback endpoints.
func insecureTransport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
}
