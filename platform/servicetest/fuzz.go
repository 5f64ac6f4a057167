package servicetest

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// Validator is one request type's validation, for FuzzValidators.
type Validator func(data []byte) error

// Validate makes a Validator of validate: data is decoded as a T (what does not
// decode is skipped, as gRPC would refuse it) and validated.
func Validate[T proto.Message](validate func(T) error) Validator {
	return func(data []byte) error {
		var zero T
		req := zero.ProtoReflect().New().Interface().(T)
		if proto.Unmarshal(data, req) != nil {
			return nil
		}
		return validate(req)
	}
}

// Seed marshals a seed request for a fuzz target taking (kind, data).
func Seed(f *testing.F, kind uint8, m proto.Message) {
	f.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(kind, b)
}

// MaxRefusal bounds a refusal's message: what a request echoes is clipped.
const MaxRefusal = 16 << 10

// FuzzValidators runs arbitrary bytes, as the request of validators[kind], through
// its validation: no input may panic, and a refusal is INVALID_ARGUMENT naming at
// least one field, with a message of at most MaxRefusal bytes and no NUL byte.
func FuzzValidators(f *testing.F, validators ...Validator) {
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		i := int(kind) % len(validators)
		err := validators[i](data)
		if err == nil {
			return
		}
		st, ok := status.FromError(err)
		switch {
		case !ok:
			t.Fatalf("validator %d: an error without a gRPC status: %v", i, err)
		case st.Code() != codes.InvalidArgument:
			t.Fatalf("validator %d: %s, want INVALID_ARGUMENT: %q", i, st.Code(), st.Message())
		case len(apierr.FieldViolations(err)) == 0:
			t.Fatalf("validator %d: a refusal naming no field: %q", i, st.Message())
		case len(st.Message()) > MaxRefusal || strings.ContainsRune(st.Message(), 0):
			t.Fatalf("validator %d: a refusal of %d bytes (NUL: %v)", i, len(st.Message()), strings.ContainsRune(st.Message(), 0))
		}
	})
}
