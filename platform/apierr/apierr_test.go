package apierr_test

import (
	"fmt"
	"testing"

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
