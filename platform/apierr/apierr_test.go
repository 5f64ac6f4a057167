package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

func TestViolations(t *testing.T) {
	var v apierr.Violations
	if v.Err() != nil || !v.Empty() {
		t.Fatal("empty violations must give no error")
	}
	v.Add("workload.role", "%q is not a role", "Web Server")
	v.Add("workload.wave", "must be 0 or more")
	err := v.Err()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code %s", status.Code(err))
	}
	got := apierr.FieldViolations(err)
	if len(got) != 2 || got["workload.role"] != `"Web Server" is not a role` {
		t.Fatalf("violations %v", got)
	}
}

func TestNewCarriesReason(t *testing.T) {
	err := apierr.New(codes.Aborted, "ETAG_MISMATCH", "changed since read")
	if status.Code(err) != codes.Aborted || apierr.Reason(err) != "ETAG_MISMATCH" {
		t.Fatalf("%v: reason %q", err, apierr.Reason(err))
	}
	if apierr.Reason(fmt.Errorf("plain")) != "" {
		t.Fatal("a plain error has no reason")
	}
}

func ExampleInvalidArgument() {
	err := apierr.InvalidArgument("page_size", "must be 0 or more")
	fmt.Println(status.Code(err), apierr.FieldViolations(err)["page_size"])
	// Output: InvalidArgument must be 0 or more
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6e3c1b0a-9f4e-4c2a-8d1b-2f3e4a5b6c7d": true,
		"6E3C1B0A-9F4E-4C2A-8D1B-2F3E4A5B6C7D": true,
		"6e3c1b0a9f4e4c2a8d1b2f3e4a5b6c7d":     false, // Keystone's form, not a UUID's
		"6e3c1b0a-9f4e-4c2a-8d1b-2f3e4a5b6c7":  false,
		"6e3c1b0a-9f4e-4c2a-8d1b_2f3e4a5b6c7d": false,
		"6e3c1b0a-9f4e-4c2a-8d1b-2f3e4a5b6c7g": false,
		"":                                     false,
	} {
		if got := apierr.IsUUID(s); got != want {
			t.Errorf("IsUUID(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestEchoIsClipped: a 4-million-character value comes back in an error as its first
// apierr.MaxEcho bytes and its length, never whole (issue 16, finding 8).
func TestEchoIsClipped(t *testing.T) {
	huge := strings.Repeat("é", 2_000_000)
	err := apierr.InvalidArgument("workload_id", "%q: use lower-case letters", huge)
	if msg := status.Convert(err).Message(); len(msg) > 2*apierr.MaxEcho+100 || !strings.Contains(msg, "(4000000 bytes)") || !utf8.ValidString(msg) {
		t.Fatalf("%d-byte message, valid UTF-8 %v: %.300s", len(msg), utf8.ValidString(msg), msg)
	}
	if msg := status.Convert(apierr.New(codes.NotFound, "NOT_FOUND", "workload %s not found", huge)).Message(); len(msg) > 2*apierr.MaxEcho+100 {
		t.Fatalf("New echoed %d bytes", len(msg))
	}
}

// TestEtcdCodes: what the store says maps to a code a client can act on.
func TestEtcdCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{rpctypes.ErrRequestTooLarge, codes.InvalidArgument},
		{status.Error(codes.ResourceExhausted, "grpc: trying to send message larger than max (3000000 vs. 2097152)"), codes.InvalidArgument},
		{errors.New("etcdserver: no leader"), codes.Unavailable},
	} {
		if got := status.Code(apierr.Etcd("put workload", c.err)); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
	if apierr.Etcd("get", nil) != nil {
		t.Error("no error made one")
	}
}
