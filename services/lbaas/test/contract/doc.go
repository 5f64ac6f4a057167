// Package contract tests hikkoshi.lbaas.v1.LoadBalancerService as its callers see it:
// the built lbaas binary, run against a real etcd server and the dev cloud's real
// Octavia (tilt/devcloud), spoken to only over gRPC. Skipped loudly when the dev cloud
// is down, failed under CI=true.
package contract
