// Command hikkoshi-collect runs on a physical server, reads its facts (read-only:
// /proc, /sys, /run/udev/data, /etc) and prints them as JSON; with --inventory it
// registers the server as a physical workload, or updates the facts of the one it
// registered before.
package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/collect"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hikkoshi-collect:", err)
		os.Exit(1)
	}
}

var notID = regexp.MustCompile(`[^a-z0-9-]+`)

// workloadID derives a workload ID from a host name: "db02.shop.example" → "phys-db02".
func workloadID(hostname string) string {
	short, _, _ := strings.Cut(strings.ToLower(hostname), ".")
	id := "phys-" + strings.Trim(notID.ReplaceAllString(short, "-"), "-")
	if len(id) > 63 {
		id = strings.TrimRight(id[:63], "-")
	}
	return id
}

func newRoot() *cobra.Command {
	var root, inventory, id, role string
	var stateful bool
	var timeout time.Duration
	tlsFiles := mtls.FromEnv()
	cmd := &cobra.Command{
		Use:   "hikkoshi-collect",
		Short: "Read this server's facts (read-only) and print them, or register them with the inventory",
		Long: `hikkoshi-collect reads a physical server's facts on the server itself: host name, OS
release, kernel, CPUs, memory, network interfaces with MACs and addresses, disks with
partitions, file systems, UUIDs and mount points, and /etc/fstab. It only reads files
under /proc, /sys, /run/udev/data and /etc; it runs no command and changes nothing.

Without --inventory it prints the facts as JSON. With --inventory it registers the
server as a physical workload (ID phys-<short host name> unless --workload-id), or,
when that workload exists, replaces its facts; the operator's fields are left alone.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			facts, err := collect.Collect(root)
			if err != nil {
				return err
			}
			if inventory == "" {
				fmt.Println(protojson.Format(facts))
				return nil
			}
			if id == "" {
				id = workloadID(facts.GetHostname())
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return register(ctx, inventory, tlsFiles, id, role, stateful, facts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/", "root of the file system to read (another path reads a copy of one)")
	f.StringVar(&inventory, "inventory", "", "inventory gRPC address (host:port) to register with; empty prints the facts")
	f.StringVar(&id, "workload-id", "", "workload ID (default phys-<short host name>)")
	f.StringVar(&role, "role", "", "role to set when the workload is created (\"db\")")
	f.BoolVar(&stateful, "stateful", false, "mark the workload stateful when it is created")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the inventory")
	f.StringVar(&tlsFiles.Cert, "tls-cert", tlsFiles.Cert, "the collector's certificate (mutual TLS; default $HIKKOSHI_TLS_CERT; none: plaintext)")
	f.StringVar(&tlsFiles.Key, "tls-key", tlsFiles.Key, "its key (default $HIKKOSHI_TLS_KEY)")
	f.StringVar(&tlsFiles.CA, "tls-ca", tlsFiles.CA, "the CA bundle that issues the inventory's certificate (default $HIKKOSHI_TLS_CA)")
	return cmd
}

func register(ctx context.Context, addr string, tlsFiles mtls.Files, id, role string, stateful bool, facts *inventoryv1.PhysicalFacts) error {
	creds, err := mtls.Client(tlsFiles)
	if err != nil {
		return fmt.Errorf("--tls-cert, --tls-key, --tls-ca: %w", err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := inventoryv1.NewInventoryServiceClient(conn)
	var addrs []string
	for _, n := range facts.GetNics() {
		for _, a := range n.GetAddresses() {
			if ip, _, _ := strings.Cut(a, "/"); !strings.HasPrefix(ip, "fe80:") {
				addrs = append(addrs, ip)
			}
		}
	}
	w := &inventoryv1.Workload{
		DisplayName: facts.GetHostname(), Role: role, Stateful: stateful,
		Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{
			Hostname: facts.GetHostname(), Addresses: addrs, OsRelease: facts.GetOsRelease(),
		}},
		Facts: &inventoryv1.Facts{Kind: &inventoryv1.Facts_Physical{Physical: facts}},
	}
	created, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: id, Workload: w})
	if err == nil {
		fmt.Printf("registered %s (%s): %d disks, %d interfaces\n", created.GetWorkload().GetName(), facts.GetHostname(), len(facts.GetDisks()), len(facts.GetNics()))
		return nil
	}
	if status.Code(err) != codes.AlreadyExists {
		return err
	}
	updated, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
		Workload:   &inventoryv1.Workload{Name: "workloads/" + id, Facts: w.GetFacts()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"facts"}},
	})
	if err != nil {
		return err
	}
	fmt.Printf("updated the facts of %s (%s)\n", updated.GetWorkload().GetName(), facts.GetHostname())
	return nil
}
