package apierr

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every Hikkoshi error.
const Domain = "hikkoshi.dev"

// Violations collects the field violations of one request. The zero value is ready
// to use.
type Violations struct {
	list []*errdetails.BadRequest_FieldViolation
}

// Add records that the field at path (for example "workload.labels") is invalid, with
// a sentence saying what a valid value looks like.
func (v *Violations) Add(path, format string, args ...any) {
	v.list = append(v.list, &errdetails.BadRequest_FieldViolation{
		Field:       printable(clip(path)),
		Description: fmt.Sprintf(format, clipArgs(args)...),
	})
}

// MaxEcho is how much of a string value an error echoes back: a 4-million-character
// name must not come back whole in the error, nor in the log line that records it.
const MaxEcho = 200

func clip(s string) string {
	if len(s) <= MaxEcho {
		return s
	}
	cut := MaxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:cut], len(s))
}

// printable escapes what a field path must not carry as is (a map key of the
// request may hold anything): control characters and bytes that are not UTF-8.
func printable(s string) string {
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || unicode.IsControl(r) {
			fmt.Fprintf(&b, `\x%02x`, s[i])
			i++
			continue
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	return b.String()
}

// clipArgs clips the string arguments of an error's message (see MaxEcho).
func clipArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch x := a.(type) {
		case string:
			out[i] = clip(x)
		default:
			out[i] = a
		}
	}
	return out
}

// Empty reports whether no violation was recorded.
func (v *Violations) Empty() bool { return len(v.list) == 0 }

// Err returns nil when no violation was recorded, and otherwise an INVALID_ARGUMENT
// status error whose message lists every violation and whose details carry a
// BadRequest with one FieldViolation each.
func (v *Violations) Err() error {
	if v.Empty() {
		return nil
	}
	parts := make([]string, 0, len(v.list))
	for _, fv := range v.list {
		parts = append(parts, fv.GetField()+": "+fv.GetDescription())
	}
	st := status.New(codes.InvalidArgument, strings.Join(parts, "; "))
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: v.list}); err == nil {
		st = d
	}
	return st.Err()
}

// InvalidArgument returns an INVALID_ARGUMENT error for one field.
func InvalidArgument(path, format string, args ...any) error {
	var v Violations
	v.Add(path, format, args...)
	return v.Err()
}

// New returns a status error with the given code and message and an ErrorInfo whose
// reason is a short UPPER_SNAKE_CASE word a program can branch on.
func New(code codes.Code, reason, format string, args ...any) error {
	st := status.New(code, fmt.Sprintf(format, clipArgs(args)...))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain}); err == nil {
		st = d
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason of err, or "" when it carries none.
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// FieldViolations returns the BadRequest field violations of err as path → description.
func FieldViolations(err error) map[string]string {
	out := map[string]string{}
	st, ok := status.FromError(err)
	if !ok {
		return out
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				out[fv.GetField()] = fv.GetDescription()
			}
		}
	}
	return out
}

// ErrWith returns nil when no violation was recorded, and otherwise a status error
// with the given code (FAILED_PRECONDITION, say, for a well-formed request the backend
// would refuse), an ErrorInfo with reason, and a BadRequest naming each field.
func (v *Violations) ErrWith(code codes.Code, reason string) error {
	if v.Empty() {
		return nil
	}
	parts := make([]string, 0, len(v.list))
	for _, fv := range v.list {
		parts = append(parts, fv.GetField()+": "+fv.GetDescription())
	}
	st := status.New(code, strings.Join(parts, "; "))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain}, &errdetails.BadRequest{FieldViolations: v.list}); err == nil {
		st = d
	}
	return st.Err()
}

// MaxRequestID is the longest request_id a Hikkoshi API accepts.
const MaxRequestID = 128

// RequestID records a violation at path when id is not empty and is not a request
// ID: at most MaxRequestID letters, digits, '.', '_' and '-' (a UUID fits).
func (v *Violations) RequestID(path, id string) {
	if id == "" {
		return
	}
	ok := len(id) <= MaxRequestID
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			ok = false
		}
	}
	if !ok {
		v.Add(path, "a request ID is at most %d letters, digits, '.', '_' and '-' (a UUID fits)", MaxRequestID)
	}
}

// MaxVolumeTypeName is the longest volume type name Cinder takes.
const MaxVolumeTypeName = 255

// VolumeTypes records a violation at path[source] for each entry of a map of
// source volume types to destination volume types that is not two names of 1 to
// MaxVolumeTypeName characters.
func (v *Violations) VolumeTypes(path string, m map[string]string) {
	for _, from := range slices.Sorted(maps.Keys(m)) {
		f := fmt.Sprintf("%s[%q]", path, from)
		switch to := m[from]; {
		case from == "" || len(from) > MaxVolumeTypeName:
			v.Add(f, "give the source volume type's name (1 to %d characters) as the key", MaxVolumeTypeName)
		case to == "" || len(to) > MaxVolumeTypeName:
			v.Add(f, "%q: give the destination volume type's name (1 to %d characters), or drop the entry to keep %q", to, MaxVolumeTypeName, from)
		}
	}
}

// IsUUID reports whether s is a UUID in its usual form (8-4-4-4-12 hex digits):
// the IDs of Nova servers, Neutron networks and ports, Glance images.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
			return false
		}
	}
	return true
}

// Prefix returns err with prefix put before its message, keeping its code and
// details. An error that is not a status error becomes UNKNOWN.
func Prefix(err error, prefix string) error {
	if err == nil {
		return nil
	}
	st, _ := status.FromError(err)
	p := st.Proto()
	p.Message = prefix + p.GetMessage()
	return status.FromProto(p).Err()
}

// ReasonCorrupt is the reason of a stored record that cannot be read.
const ReasonCorrupt = "CORRUPT_RECORD"

// Corrupt is the error of a stored record that cannot be read: DATA_LOSS with
// reason CORRUPT_RECORD, in every service (retrying cannot help; an operator must
// look at the record).
func Corrupt(format string, args ...any) error {
	return New(codes.DataLoss, ReasonCorrupt, format, args...)
}

// Etcd maps an error of the store (etcd) during op to the status a client can act
// on: a cancelled call is CANCELLED, a deadline DEADLINE_EXCEEDED, a request larger
// than etcd takes INVALID_ARGUMENT (retrying cannot help), anything else UNAVAILABLE
// (retry).
func Etcd(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return New(codes.Canceled, "CANCELED", "%s: canceled", op)
	case errors.Is(err, context.DeadlineExceeded):
		return New(codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "%s: deadline exceeded", op)
	case tooLarge(err):
		return New(codes.InvalidArgument, "REQUEST_TOO_LARGE", "%s: the record is larger than the store takes (etcd's request size limit): make it smaller", op)
	}
	return New(codes.Unavailable, "ETCD_UNAVAILABLE", "%s: etcd: %v", op, err)
}

// tooLarge reports etcd's "request is too large", or the client's own refusal to
// send a message over its size limit.
func tooLarge(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	if strings.Contains(msg, "request is too large") || strings.Contains(msg, "message larger than max") {
		return true
	}
	return status.Code(err) == codes.ResourceExhausted
}
