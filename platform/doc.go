// Package platform is the root of Hikkoshi's shared runtime module: the code every
// Hikkoshi service needs in order to run (gRPC server bootstrap, etcd sessions and
// registration, configuration, logging, metrics, API errors), and nothing that belongs
// to a single service.
package platform
