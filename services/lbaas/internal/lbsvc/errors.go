package lbsvc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// Reasons of the ErrorInfo details, for programs to branch on.
const (
	ReasonNotFound      = "LOAD_BALANCER_NOT_FOUND"
	ReasonUnsupported   = "UNSUPPORTED_BY_OCTAVIA"
	ReasonConflict      = "OCTAVIA_CONFLICT"
	ReasonError         = "LOAD_BALANCER_ERROR"
	ReasonStuck         = "LOAD_BALANCER_STUCK"
	ReasonQuota         = "OCTAVIA_QUOTA"
	ReasonForbidden     = "OCTAVIA_FORBIDDEN"
	ReasonRejected      = "OCTAVIA_REJECTED"
	ReasonUnavailable   = "OCTAVIA_UNAVAILABLE"
	ReasonRequestReused = "REQUEST_ID_REUSED"
	ReasonRequestGone   = "REQUEST_LOAD_BALANCER_DELETED"
	ReasonUnregistered  = "NOT_REGISTERED"
	// ReasonMemberNotFound: a member reference that names no member of the pool.
	ReasonMemberNotFound = "MEMBER_NOT_FOUND"
)

// toStatus maps an error of the thin client (or of this package) to a gRPC status
// error with a reason. what names the operation for the message ("create load
// balancer web"). Status errors pass through.
func toStatus(what string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		invalid     *octavia.InvalidSpecError
		unsupported *octavia.UnsupportedError
		conflict    *octavia.ConflictError
		final       *octavia.StatusError
		stuck       *octavia.StuckError
		unexpected  gophercloud.ErrUnexpectedResponseCode
	)
	switch {
	case errors.As(err, &invalid):
		var v apierr.Violations
		for _, x := range invalid.Violations {
			v.Add(fieldPath(x.Field), "%s", x.Description)
		}
		return v.Err()
	case errors.As(err, &unsupported):
		var v apierr.Violations
		for _, x := range unsupported.Violations {
			v.Add(fieldPath(x.Field), "%s", x.Description)
		}
		return v.ErrWith(codes.FailedPrecondition, ReasonUnsupported)
	case errors.Is(err, context.DeadlineExceeded):
		return apierr.New(codes.DeadlineExceeded, ReasonUnavailable, "%s: gave up waiting for Octavia: %v", what, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: cancelled: %v", what, err)
	case errors.As(err, &final) && final.Status == "DELETED":
		return apierr.New(codes.NotFound, ReasonNotFound, "%s: load balancer %s was deleted", what, final.ID)
	case errors.As(err, &final):
		return apierr.New(codes.FailedPrecondition, ReasonError, "%s: %v", what, err)
	case errors.As(err, &stuck):
		return apierr.New(codes.FailedPrecondition, ReasonStuck, "%s: %v", what, err)
	case errors.As(err, &conflict):
		return apierr.New(codes.Aborted, ReasonConflict, "%s: %v; try again", what, err)
	case octavia.IsNotFound(err):
		return apierr.New(codes.NotFound, ReasonNotFound, "%s: %s", what, faultOf(err))
	case octavia.IsQuota(err):
		return apierr.New(codes.ResourceExhausted, ReasonQuota,
			"%s: Octavia's quota for this project is met (%s): delete unused load balancers or raise the quota", what, faultOf(err))
	case errors.As(err, &unexpected) && unexpected.Actual == http.StatusBadRequest:
		return apierr.New(codes.InvalidArgument, ReasonRejected, "%s: Octavia refused the request: %s", what, faultOf(err))
	case errors.As(err, &unexpected) && (unexpected.Actual == http.StatusForbidden || unexpected.Actual == http.StatusUnauthorized):
		return apierr.New(codes.PermissionDenied, ReasonForbidden,
			"%s: Octavia refused the service's credentials (%d): give its user the load-balancer_member role", what, unexpected.Actual)
	case errors.As(err, &unexpected) && unexpected.Actual == http.StatusConflict:
		return apierr.New(codes.Aborted, ReasonConflict, "%s: %s; try again", what, faultOf(err))
	}
	return apierr.New(codes.Unavailable, ReasonUnavailable, "%s: %v", what, err)
}

// faultOf returns Octavia's own sentence (faultstring) of an API error, else the
// error's text.
func faultOf(err error) string {
	var e gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &e) {
		var body struct {
			Faultstring string `json:"faultstring"`
		}
		if json.Unmarshal(e.Body, &body) == nil && body.Faultstring != "" {
			return body.Faultstring
		}
	}
	return err.Error()
}
