// Package apierr builds the gRPC errors Hikkoshi services answer with: canonical codes
// carrying google.rpc error details, so that a caller (and grpcurl) sees which field
// was wrong and a sentence it can act on.
package apierr
