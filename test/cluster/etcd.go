package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// EtcdRevision returns etcd's current revision, through its JSON gateway
// (no etcd client dependency in the product module).
func (c *Cluster) EtcdRevision(ctx context.Context) (int64, error) {
	var out struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// "AA==" is the key "\x00": any range answers with the header.
	if err := c.etcdPost(ctx, "/v3/kv/range", map[string]any{"key": "AA=="}, &out); err != nil {
		return 0, err
	}
	return strconv.ParseInt(out.Header.Revision, 10, 64)
}

// CompactEtcd compacts etcd's history up to rev, so that watches from older
// resource versions answer 410 Gone once the apiserver's watch cache no
// longer holds them (see RestartAPIServer).
func (c *Cluster) CompactEtcd(ctx context.Context, rev int64) error {
	return c.etcdPost(ctx, "/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, nil)
}

func (c *Cluster) etcdPost(ctx context.Context, path string, in any, out any) error {
	b, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.EtcdURL+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("cluster: etcd %s: %w", path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cluster: etcd %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster: etcd %s: %d %s", path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("cluster: etcd %s: %w", path, err)
		}
	}
	return nil
}

// DeleteEtcdKey deletes one key from etcd itself, under the apiserver's
// storage prefix (/registry/pods/<namespace>/<name> for a pod): with the
// apiserver down (RestartAPIServerWith), an object gone while no watch
// could see it go.
func (c *Cluster) DeleteEtcdKey(ctx context.Context, key string) error {
	var out struct {
		Deleted string `json:"deleted"`
	}
	if err := c.etcdPost(ctx, "/v3/kv/deleterange", map[string]any{"key": base64.StdEncoding.EncodeToString([]byte("/registry/" + key))}, &out); err != nil {
		return err
	}
	if out.Deleted != "1" {
		return fmt.Errorf("cluster: etcd has no key /registry/%s", key)
	}
	return nil
}

// RestartAPIServer stops kube-apiserver and starts it again with the same
// flags and port. Its watch cache starts empty, so only resource versions
// etcd still has can be watched from.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	return c.RestartAPIServerWith(ctx, nil)
}

// RestartAPIServerWith is RestartAPIServer, running whileDown (when not
// nil) between the stop and the start: every watch is cut then, and what
// whileDown changes in etcd reaches no watcher as an event.
func (c *Cluster) RestartAPIServerWith(ctx context.Context, whileDown func(context.Context) error) error {
	p := c.Process("kube-apiserver")
	if p == nil {
		return fmt.Errorf("cluster: no kube-apiserver running")
	}
	p.Stop(30 * time.Second)
	var downErr error // the apiserver starts again whatever whileDown did: the cluster is shared
	if whileDown != nil {
		downErr = whileDown(ctx)
	}
	np, err := StartProcess(p.Name, c.Dir, p.cmd.Path, p.cmd.Args[1:], nil)
	if err != nil {
		return errors.Join(downErr, err)
	}
	for i, q := range c.procs {
		if q == p {
			c.procs[i] = np
		}
	}
	hc := &http.Client{Transport: insecureTransport(), Timeout: 5 * time.Second}
	err = np.WaitFor(ctx, c.opts.StartTimeout, "ready after restart", func(ctx context.Context) error {
		return httpOK(ctx, hc, c.Server+"/readyz", c.token)
	})
	return errors.Join(downErr, err)
}
