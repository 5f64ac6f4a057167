// Package service runs a Hikkoshi gRPC service: configuration from flags and the
// environment, structured logs, an etcd client (or an embedded etcd server for
// one-process development), one etcd lease session per process with the instance's
// registration under it, a gRPC server with server reflection, the standard health
// service, Prometheus metrics, panic recovery and request validation, and a graceful
// shutdown.
//
// A service's main calls Run with a function that registers its handlers:
//
//	err := service.Run(ctx, cfg, func(rt *service.Runtime) error {
//		srv, err := inventory.NewServer(rt.Etcd, rt.Logger)
//		if err != nil {
//			return err
//		}
//		inventoryv1.RegisterInventoryServiceServer(rt.GRPC, srv)
//		service.AddValidator(rt, inventory.ValidateCreateWorkload)
//		return nil
//	})
//
// While the instance is not registered in etcd (at start, or after its lease was
// lost and before it is registered again), its health is NOT_SERVING and every call
// to the service's own methods is refused with UNAVAILABLE: an instance never serves
// while it is unregistered.
package service
