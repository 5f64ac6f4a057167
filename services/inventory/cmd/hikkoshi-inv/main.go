// Command hikkoshi-inv is the operator's command line for the inventory service:
// list and change workloads (role, stateful, wave, labels), run and follow syncs,
// propose and accept wave plans, check a wave before it moves, run waves. The same
// commands are hikkoshi's (hikkoshi workloads, hikkoshi wave …).
package main

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/status"

	"github.com/hikkoshi/hikkoshi/services/inventory/invcli"
)

func main() {
	err := invcli.NewRoot().Execute()
	if errors.Is(err, invcli.ErrNotReady) {
		os.Exit(3)
	}
	if errors.Is(err, invcli.ErrRunNotDone) {
		os.Exit(4)
	}
	if err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "hikkoshi-inv: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintln(os.Stderr, "hikkoshi-inv:", err)
		}
		os.Exit(1)
	}
}
