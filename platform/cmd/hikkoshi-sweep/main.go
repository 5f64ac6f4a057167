// Command hikkoshi-sweep proves that no secret leaked: it reads the secrets from
// where they belong (clouds.yaml, the PKI's keys, token files, etcd's password in
// $HIKKOSHI_ETCD_PASSWORD, which also opens etcd for the sweep) and looks for them in
// logs, in every etcd key and value, and in metrics. Each hit names its place and
// where the secret belongs, never the secret; any hit exits 1.
//
//	hikkoshi-sweep --clouds-yaml clouds.yaml --pem-dir pki --log 'state/*.log' \
//	  --etcd-endpoints http://127.0.0.1:2479 --metrics https://127.0.0.1:7411/metrics \
//	  --tls-cert pki/admin.pem --tls-key pki/admin-key.pem --tls-ca pki/ca.pem
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/platform/sweep"
)

func main() {
	var cloudsYAML, pemDir string
	var secretFiles, logs, endpoints, metrics []string
	var tf mtls.Files
	cmd := &cobra.Command{
		Use:   "hikkoshi-sweep",
		Short: "Look for secrets (clouds.yaml's, the PKI's keys, token files) in logs, etcd and metrics",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			var secrets []sweep.Secret
			if cloudsYAML != "" {
				s, err := sweep.FromCloudsYAML(cloudsYAML)
				if err != nil {
					return err
				}
				secrets = append(secrets, s...)
			}
			if pemDir != "" {
				s, err := sweep.FromPEMKeys(pemDir)
				if err != nil {
					return err
				}
				secrets = append(secrets, s...)
			}
			for _, f := range secretFiles {
				s, err := sweep.FromFile(f)
				if err != nil {
					return err
				}
				secrets = append(secrets, s)
			}
			// etcd's credentials come from where the services read them; its password
			// is itself a secret to look for.
			etcdUser, etcdPassword := os.Getenv("HIKKOSHI_ETCD_USERNAME"), os.Getenv("HIKKOSHI_ETCD_PASSWORD")
			if etcdPassword != "" {
				secrets = append(secrets, sweep.Secret{From: "HIKKOSHI_ETCD_PASSWORD", Value: etcdPassword})
			}
			if len(secrets) == 0 {
				return errors.New("no secret to look for: give --clouds-yaml, --pem-dir or --secret-file")
			}
			var places sweep.Places
			for _, g := range logs {
				files, err := filepath.Glob(g)
				if err != nil {
					return err
				}
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						return err
					}
					places.Add("log "+f, string(b))
				}
			}
			if len(endpoints) > 0 {
				c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second,
					Username: etcdUser, Password: etcdPassword})
				if err != nil {
					return err
				}
				defer c.Close()
				resp, err := c.Get(ctx, "\x00", clientv3.WithFromKey())
				if err != nil {
					return fmt.Errorf("etcd: %w", err)
				}
				for _, kv := range resp.Kvs {
					places.Add("etcd "+string(kv.Key), string(kv.Key)+" "+string(kv.Value))
				}
			}
			hc := http.DefaultClient
			if tf.Set() {
				tc, err := mtls.ClientConfig(tf)
				if err != nil {
					return err
				}
				hc = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
			}
			for _, u := range metrics {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				resp, err := hc.Do(req)
				if err != nil {
					return fmt.Errorf("metrics %s: %w", u, err)
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil {
					return err
				}
				places.Add("metrics "+u, string(b))
			}
			hits := places.Find(secrets)
			for _, h := range hits {
				fmt.Println("FOUND:", h)
			}
			if len(hits) > 0 {
				return fmt.Errorf("%d secrets found", len(hits))
			}
			fmt.Printf("%d secrets looked for in %d places (logs, etcd keys and values, metrics): none found\n", len(secrets), places.Len())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cloudsYAML, "clouds-yaml", "", "clouds.yaml whose passwords and secrets are looked for")
	f.StringVar(&pemDir, "pem-dir", "", "directory of *-key.pem private keys whose bodies are looked for")
	f.StringArrayVar(&secretFiles, "secret-file", nil, "a file holding a secret (a token); repeat")
	f.StringArrayVar(&logs, "log", nil, "log files to search (a glob); repeat")
	f.StringSliceVar(&endpoints, "etcd-endpoints", nil, "etcd whose every key and value are searched")
	f.StringArrayVar(&metrics, "metrics", nil, "a /metrics URL to search; repeat")
	f.StringVar(&tf.Cert, "tls-cert", "", "client certificate for https metrics")
	f.StringVar(&tf.Key, "tls-key", "", "its key")
	f.StringVar(&tf.CA, "tls-ca", "", "CA bundle of the metrics' certificates")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hikkoshi-sweep:", err)
		os.Exit(1)
	}
}
