// Command hikkoshi-pki makes a development PKI for the services' mutual TLS: a CA,
// a certificate per identity (the four services, the collector, a viewer, an
// operator and an admin) and the authorization policy that gives each its role.
// For the demo, Tilt and tests; a production PKI issues the same shape of
// certificates (the identity as common name; server and client use) from its own
// CA, and its policy names its own people.
//
//	hikkoshi-pki DIR [IDENTITY...]
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hikkoshi/hikkoshi/platform/mtls"
)

func main() {
	cmd := &cobra.Command{
		Use:   "hikkoshi-pki DIR [IDENTITY...]",
		Short: "Make a development CA, certificates and authorization policy in DIR (kept if there)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			dir, ids := args[0], args[1:]
			if len(ids) == 0 {
				ids = mtls.DevIdentities
			}
			if err := mtls.WriteDevPKI(dir, ids...); err != nil {
				return err
			}
			policy := filepath.Join(dir, "policy.yaml")
			if _, err := os.Stat(policy); os.IsNotExist(err) {
				if err := os.WriteFile(policy, []byte(mtls.DevPolicy), 0o644); err != nil {
					return err
				}
			}
			fmt.Printf("%s: ca.pem, policy.yaml and, for %v, NAME.pem and NAME-key.pem\n", dir, ids)
			return nil
		},
	}
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hikkoshi-pki:", err)
		os.Exit(1)
	}
}
