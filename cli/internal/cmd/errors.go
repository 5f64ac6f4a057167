package cmd

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/services/inventory/invcli"
	"github.com/hikkoshi/hikkoshi/services/lbaas/lbcli"
)

// ErrNotDone is a followed job that ended other than succeeded: exit 4, as a wave
// run's.
var ErrNotDone = errors.New("the job did not succeed")

// usagef is a command line the user must change: exit 2.
func usagef(format string, a ...any) error {
	return lbcli.UsageError{Msg: fmt.Sprintf(format, a...)}
}

// ExitCode is the process's exit status for err: 2 a command line to change, 3 a
// wave not ready (pre-flight) or an import plan with leftovers, 4 a followed run or
// job that did not end well, 1 anything else.
func ExitCode(err error) int {
	var ue lbcli.UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	case errors.Is(err, invcli.ErrNotReady), errors.Is(err, lbcli.ErrIncomplete):
		return 3
	case errors.Is(err, invcli.ErrRunNotDone), errors.Is(err, ErrNotDone):
		return 4
	}
	return 1
}

// Explain is err for a person: a service's refusal as its gRPC code and message,
// then each field it named with the sentence to act on; a reason code when the
// service gave one.
func Explain(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Sprintf("hikkoshi: %v\n", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hikkoshi: %s: %s\n", st.Code(), st.Message())
	fields := apierr.FieldViolations(err)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  field %s: %s\n", k, fields[k])
	}
	if r := apierr.Reason(err); r != "" {
		fmt.Fprintf(&b, "  reason: %s\n", r)
	}
	return b.String()
}
