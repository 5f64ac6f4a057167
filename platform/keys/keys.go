// Package keys is the one place that says where Hikkoshi keeps things in etcd.
//
// Every key lives under /hikkoshi/. Keys a process owns (its registration, a job
// claim, a lock, leadership) are written under that process's session lease so that
// they vanish when the process dies.
//
//	/hikkoshi/services/<svc>/<instance>          registration → JSON (lease)
//	/hikkoshi/inventory/workloads/<workload_id>  a workload (protobuf)
//	/hikkoshi/inventory/requests/<request_id>    idempotency record of a create (24 h lease)
//	/hikkoshi/inventory/syncs/<sync_id>           a sync of a source cloud (protobuf)
//	/hikkoshi/inventory/clouds/<cloud>/networks/<id> a cloud's network as last synced (protobuf)
//	/hikkoshi/inventory/locks/sync/<cloud>        mutex: one sync per cloud (session lease)
//	/hikkoshi/inventory/plans/<plan_id>           a proposed or accepted wave plan (protobuf)
//	/hikkoshi/inventory/runs/<run_id>             a wave run, each workload's step (protobuf; written by the runner leader)
//	/hikkoshi/inventory/live-runs/<wave>          the live run of a wave → run ID (one per wave)
//	/hikkoshi/inventory/runner/election/          the wave runner's leader election (session lease)
//	/hikkoshi/converter/jobs/<job_id>             a conversion job (protobuf)
//	/hikkoshi/converter/claims/<job_id>           the worker holding a job → instance (its lease)
//	/hikkoshi/converter/requests/<request_id>     idempotency record of a CreateJob (24 h lease)
//	/hikkoshi/converter/slots/<cloud>/<k>         one of a cloud's job slots → job ID (worker's lease)
//	/hikkoshi/netbridge/bridges/<bridge_id>       a bridge between two clouds' networks (protobuf)
//	/hikkoshi/netbridge/requests/<request_id>     idempotency record of a CreateBridge (24 h lease)
//	/hikkoshi/netbridge/locks/bridge/<bridge_id>  mutex of one bridge's applies, rollbacks and moves (session lease)
//	/hikkoshi/netbridge/watchdog/election/        the VRRP watchdog's leader election (session lease)
//	/hikkoshi/netbridge/watchdog/status           what the watchdog found and did (protobuf; written by the leader)
//	/hikkoshi/lbaas/<scope>/requests/<request_id> a load balancer create's record → JSON (24 h lease)
//	/hikkoshi/lbaas/<scope>/locks/requests/<id>  mutex of one create request (session lease)
//	/hikkoshi/lbaas/locks/lb/<lb_id>             mutex of one load balancer's changes (session lease)
//
// An lbaas <scope> is the path-escaped "<cloud>@<region>" the service talks to, so that
// services for different clouds sharing one etcd keep their requests apart. Octavia's
// load balancer IDs are UUIDs, so their locks need no scope.
package keys

import (
	"net/url"
	"strconv"
)

// Root is the prefix of every Hikkoshi key.
const Root = "/hikkoshi/"

// ServicesPrefix is the prefix under which running service instances register.
const ServicesPrefix = Root + "services/"

// Service returns the prefix of the registrations of one service, ending in "/".
func Service(svc string) string { return ServicesPrefix + svc + "/" }

// Registration returns the registration key of one service instance.
func Registration(svc, instance string) string { return Service(svc) + instance }

// WorkloadsPrefix is the prefix of the inventory's workloads.
const WorkloadsPrefix = Root + "inventory/workloads/"

// Workload returns the key of one workload.
func Workload(id string) string { return WorkloadsPrefix + id }

// RequestsPrefix is the prefix of the inventory's create idempotency records.
const RequestsPrefix = Root + "inventory/requests/"

// Request returns the key of one idempotency record.
func Request(requestID string) string { return RequestsPrefix + requestID }

// LBScope returns the lbaas scope of a cloud and region.
func LBScope(cloud, region string) string {
	return url.PathEscape(cloud) + "@" + url.PathEscape(region)
}

// LBRequest returns the key of a load balancer create's idempotency record.
func LBRequest(scope, requestID string) string {
	return Root + "lbaas/" + scope + "/requests/" + requestID
}

// LBRequestLock returns the mutex prefix of one create request.
func LBRequestLock(scope, requestID string) string {
	return Root + "lbaas/" + scope + "/locks/requests/" + requestID
}

// LBImportRequest returns the key of an import apply's idempotency record.
func LBImportRequest(scope, requestID string) string {
	return Root + "lbaas/" + scope + "/import-requests/" + requestID
}

// LBNameLock returns the mutex prefix of the load balancer of one name (an
// import's apply creates or converges it by its name).
func LBNameLock(scope, name string) string {
	return Root + "lbaas/" + scope + "/locks/names/" + url.PathEscape(name)
}

// LBLock returns the mutex prefix of one load balancer's changes.
func LBLock(lbID string) string { return Root + "lbaas/locks/lb/" + lbID }

// SyncsPrefix is the prefix of the inventory's syncs.
const SyncsPrefix = Root + "inventory/syncs/"

// Sync returns the key of one sync.
func Sync(id string) string { return SyncsPrefix + id }

// SyncLock returns the mutex prefix that allows one sync of a cloud at a time.
func SyncLock(cloud string) string { return Root + "inventory/locks/sync/" + url.PathEscape(cloud) }

// CloudNetworks returns the prefix of a cloud's synced networks.
func CloudNetworks(cloud string) string {
	return Root + "inventory/clouds/" + url.PathEscape(cloud) + "/networks/"
}

// CloudNetwork returns the key of one synced network.
func CloudNetwork(cloud, id string) string { return CloudNetworks(cloud) + id }

// Plan returns the key of one wave plan.
func Plan(id string) string { return Root + "inventory/plans/" + id }

// RunsPrefix is the prefix of the inventory's wave runs.
const RunsPrefix = Root + "inventory/runs/"

// Run returns the key of one wave run.
func Run(id string) string { return RunsPrefix + id }

// LiveRun returns the key naming the live run of a wave.
func LiveRun(wave int32) string { return Root + "inventory/live-runs/" + strconv.Itoa(int(wave)) }

// RunnerElection is the prefix of the wave runner's leader election.
const RunnerElection = Root + "inventory/runner/election/"

// JobsPrefix is the prefix of the converter's jobs.
const JobsPrefix = Root + "converter/jobs/"

// Job returns the key of one conversion job.
func Job(id string) string { return JobsPrefix + id }

// JobCutOversPrefix is the prefix of CutOverJob requests, one per job.
const JobCutOversPrefix = Root + "converter/cutovers/"

// JobCutOver returns the key of a job's CutOverJob request: apart from the job's
// record, which its worker writes whole.
func JobCutOver(id string) string { return JobCutOversPrefix + id }

// ClaimsPrefix is the prefix of the converter workers' job claims.
const ClaimsPrefix = Root + "converter/claims/"

// Claim returns the key by which a worker holds a job, under its lease.
func Claim(id string) string { return ClaimsPrefix + id }

// JobRequest returns the key of a CreateJob idempotency record.
func JobRequest(requestID string) string { return Root + "converter/requests/" + requestID }

// JobSlotsRoot is the prefix of every cloud's converter job slots.
const JobSlotsRoot = Root + "converter/slots/"

// JobSlotsPrefix returns the prefix of a cloud's converter job slots.
func JobSlotsPrefix(cloud string) string { return JobSlotsRoot + url.PathEscape(cloud) + "/" }

// JobSlot returns the key of slot k of a cloud's job limit.
func JobSlot(cloud string, k int) string { return JobSlotsPrefix(cloud) + strconv.Itoa(k) }

// BridgesPrefix is the prefix of netbridge's bridges.
const BridgesPrefix = Root + "netbridge/bridges/"

// Bridge returns the key of one bridge.
func Bridge(id string) string { return BridgesPrefix + id }

// BridgeRequest returns the key of a CreateBridge idempotency record.
func BridgeRequest(requestID string) string { return Root + "netbridge/requests/" + requestID }

// BridgeLock returns the mutex prefix of one bridge's changes.
func BridgeLock(id string) string { return Root + "netbridge/locks/bridge/" + id }

// WatchdogElection is the prefix of the VRRP watchdog's leader election.
const WatchdogElection = Root + "netbridge/watchdog/election/"

// WatchdogStatus is the key of the VRRP watchdog's status.
const WatchdogStatus = Root + "netbridge/watchdog/status"
