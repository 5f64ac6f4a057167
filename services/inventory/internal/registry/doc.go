// Package registry is the inventory's workload registry: workloads stored in etcd
// (one key each, the key's ModRevision as etag), the migration state machine, request
// validation and the gRPC handlers of hikkoshi.inventory.v1.InventoryService.
package registry
