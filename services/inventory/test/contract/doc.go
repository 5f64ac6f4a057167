// Package contract holds the inventory's black-box contract tests: they build the
// inventory binary, run it against a real etcd server and speak to it only over gRPC
// and etcd, as a client or operator would.
package contract
