package registry

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// Limits of the workload registry.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
	// MaxPageBytes ends a ListWorkloads page early, whatever its page_size.
	MaxPageBytes   = 4 << 20
	MaxWave        = 10000
	maxDisplayName = 256
	maxStateReason = 2048
	maxLabels      = 64
	maxLabelValue  = 63
	maxSourceField = 255
)

var (
	idRE       = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	roleRE     = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
	labelKeyRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$`)
	labelValRE = regexp.MustCompile(`^[A-Za-z0-9._-]*$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
)

// updatable lists the fields UpdateWorkload may change.
var updatable = map[string]bool{
	"display_name": true,
	"role":         true,
	"stateful":     true,
	"wave":         true,
	"state":        true,
	"state_reason": true,
	"labels":       true,
	"facts":        true,
	"physical":     true,
}

const namePrefix = "workloads/"

// parseName returns the workload ID of a name "workloads/{id}".
func parseName(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, namePrefix)
	return id, ok && idRE.MatchString(id)
}

func checkName(v *apierr.Violations, path, name string) {
	if name == "" {
		v.Add(path, `required: the workload's name, "workloads/{workload_id}"`)
		return
	}
	if _, ok := parseName(name); !ok {
		v.Add(path, `%q is not a workload name: want "workloads/{workload_id}" with an ID of lower-case letters, digits and hyphens`, name)
	}
}

func checkEtag(v *apierr.Violations, path, etag string) {
	if etag == "" {
		return
	}
	if n, err := strconv.ParseInt(etag, 10, 64); err != nil || n <= 0 {
		v.Add(path, "%q is not an etag of this service: send back the etag from GetWorkload or ListWorkloads unchanged", etag)
	}
}

func checkRole(v *apierr.Violations, path, role string) {
	if role != "" && !roleRE.MatchString(role) {
		v.Add(path, "%q: a role is lower-case letters, digits and hyphens, starting with a letter, at most 63 characters (e.g. web, api, db)", role)
	}
}

func checkWave(v *apierr.Violations, path string, wave int32) {
	if wave < 0 || wave > MaxWave {
		v.Add(path, "%d: a wave is from 1 to %d, or 0 for not yet assigned", wave, MaxWave)
	}
}

func checkLabels(v *apierr.Violations, path string, labels map[string]string) {
	if len(labels) > maxLabels {
		v.Add(path, "%d labels: at most %d", len(labels), maxLabels)
		return
	}
	for k, val := range labels {
		if !labelKeyRE.MatchString(k) {
			v.Add(fmt.Sprintf("%s[%q]", path, k), "a label key is lower-case letters, digits, '.', '_', '-' and '/', at most 63 characters, starting and ending with a letter or digit")
		}
		if len(val) > maxLabelValue || !labelValRE.MatchString(val) {
			v.Add(fmt.Sprintf("%s[%q]", path, k), "a label value is letters, digits, '.', '_' and '-', at most %d characters", maxLabelValue)
		}
	}
}

// MaxWorkloadBytes bounds a workload as given to CreateWorkload or UpdateWorkload
// (its facts, labels and names together).
const MaxWorkloadBytes = 256 << 10

func checkSize(v *apierr.Violations, w *inventoryv1.Workload) {
	if n := proto.Size(w); n > MaxWorkloadBytes {
		v.Add("workload", "%d bytes: at most %d (facts, labels and names together)", n, MaxWorkloadBytes)
	}
}

func checkText(v *apierr.Violations, path, s string, max int) {
	if len(s) > max {
		v.Add(path, "%d bytes: at most %d", len(s), max)
	}
	if strings.ContainsAny(s, "\x00") {
		v.Add(path, "must not contain NUL bytes")
	}
}

func checkSource(v *apierr.Violations, w *inventoryv1.Workload) {
	switch src := w.GetSource().(type) {
	case *inventoryv1.Workload_Instance:
		in := src.Instance
		if in.GetCloud() == "" {
			v.Add("workload.instance.cloud", `required: the clouds.yaml entry of the source cloud, e.g. "old"`)
		} else if strings.ContainsAny(in.GetCloud(), "/ \t\n\x00") || len(in.GetCloud()) > 64 {
			v.Add("workload.instance.cloud", "%q: a clouds.yaml entry name has no '/', spaces or control characters and at most 64 characters", in.GetCloud())
		}
		if in.GetServerId() == "" {
			v.Add("workload.instance.server_id", "required: the Nova server ID of the instance")
		}
		checkText(v, "workload.instance.server_id", in.GetServerId(), maxSourceField)
		checkText(v, "workload.instance.project_id", in.GetProjectId(), maxSourceField)
		checkText(v, "workload.instance.region", in.GetRegion(), maxSourceField)
		if w.GetKind() == inventoryv1.WorkloadKind_WORKLOAD_KIND_PHYSICAL {
			v.Add("workload.kind", "is physical but the source is an instance: leave kind unset or make them agree")
		}
	case *inventoryv1.Workload_Physical:
		p := src.Physical
		if p.GetHostname() == "" {
			v.Add("workload.physical.hostname", "required: the physical server's host name")
		} else if !hostnameRE.MatchString(p.GetHostname()) {
			v.Add("workload.physical.hostname", "%q is not a host name (letters, digits, '.' and '-')", p.GetHostname())
		}
		for i, a := range p.GetAddresses() {
			if _, err := netip.ParseAddr(a); err != nil {
				v.Add(fmt.Sprintf("workload.physical.addresses[%d]", i), "%q is not an IP address", a)
			}
		}
		checkText(v, "workload.physical.os_release", p.GetOsRelease(), maxSourceField)
		checkText(v, "workload.physical.flavor", p.GetFlavor(), maxSourceField)
		if q := p.GetP2V(); q != nil {
			// The converter checks the rest (its own policy: which disks, agents and
			// clouds it may use) when a run creates the job.
			switch {
			case q.GetInspectOnly():
				v.Add("workload.physical.p2v.inspect_only", "a run moves the server: leave inspect_only to a converter dry run")
			case q.GetDiskPath() == "" && q.GetAgentUrl() == "":
				v.Add("workload.physical.p2v", "give disk_path (its disk as the converter worker sees it) or agent_url (hikkoshi-p2v-agent on the server)")
			case q.GetDiskPath() != "" && q.GetAgentUrl() != "":
				v.Add("workload.physical.p2v.agent_url", "give disk_path or agent_url, not both")
			}
			checkText(v, "workload.physical.p2v.disk_path", q.GetDiskPath(), maxSourceField)
			checkText(v, "workload.physical.p2v.agent_url", q.GetAgentUrl(), maxSourceField)
			if len(p.GetAddresses()) == 0 {
				v.Add("workload.physical.addresses", "required with p2v: the server's first address is the one it keeps in the new cloud")
			}
		}
		if w.GetKind() == inventoryv1.WorkloadKind_WORKLOAD_KIND_INSTANCE {
			v.Add("workload.kind", "is instance but the source is a physical server: leave kind unset or make them agree")
		}
	default:
		v.Add("workload.source", "required: set workload.instance (a cloud instance) or workload.physical (a physical server)")
	}
}

func checkState(v *apierr.Violations, path string, s inventoryv1.WorkloadState) bool {
	if _, ok := inventoryv1.WorkloadState_name[int32(s)]; !ok {
		v.Add(path, "%d is not a workload state", s)
		return false
	}
	return true
}

// ValidateCreateWorkload checks a CreateWorkloadRequest.
func ValidateCreateWorkload(r *inventoryv1.CreateWorkloadRequest) error {
	var v apierr.Violations
	if id := r.GetWorkloadId(); id != "" && !idRE.MatchString(id) {
		v.Add("workload_id", "%q: an ID is lower-case letters, digits and hyphens, starting with a letter, at most 63 characters", id)
	}
	v.RequestID("request_id", r.GetRequestId())
	w := r.GetWorkload()
	if w == nil {
		v.Add("workload", "required: the workload to create")
		return v.Err()
	}
	checkSize(&v, w)
	checkSource(&v, w)
	checkText(&v, "workload.display_name", w.GetDisplayName(), maxDisplayName)
	checkRole(&v, "workload.role", w.GetRole())
	checkWave(&v, "workload.wave", w.GetWave())
	checkLabels(&v, "workload.labels", w.GetLabels())
	checkText(&v, "workload.state_reason", w.GetStateReason(), maxStateReason)
	checkFacts(&v, "workload.facts", w)
	if checkState(&v, "workload.state", w.GetState()) {
		switch w.GetState() {
		case inventoryv1.WorkloadState_WORKLOAD_STATE_UNSPECIFIED, inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED:
		case inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED:
			if w.GetWave() < 1 {
				v.Add("workload.wave", "a workload created as planned needs a wave of 1 or more")
			}
		default:
			v.Add("workload.state", "a new workload starts as discovered (or planned, with a wave); move it on with UpdateWorkload")
		}
	}
	return v.Err()
}

// ValidateGetWorkload checks a GetWorkloadRequest.
func ValidateGetWorkload(r *inventoryv1.GetWorkloadRequest) error {
	var v apierr.Violations
	checkName(&v, "name", r.GetName())
	return v.Err()
}

// ValidateListWorkloads checks a ListWorkloadsRequest.
func ValidateListWorkloads(r *inventoryv1.ListWorkloadsRequest) error {
	var v apierr.Violations
	if r.GetPageSize() < 0 {
		v.Add("page_size", "%d: must be 0 (default %d) or more; at most %d are returned", r.GetPageSize(), DefaultPageSize, MaxPageSize)
	}
	if r.Wave != nil {
		checkWave(&v, "wave", r.GetWave())
	}
	checkRole(&v, "role", r.GetRole())
	checkState(&v, "state", r.GetState())
	if _, ok := inventoryv1.WorkloadKind_name[int32(r.GetKind())]; !ok {
		v.Add("kind", "%d is not a workload kind", r.GetKind())
	}
	checkLabels(&v, "labels", r.GetLabels())
	return v.Err()
}

// ValidateUpdateWorkload checks an UpdateWorkloadRequest.
func ValidateUpdateWorkload(r *inventoryv1.UpdateWorkloadRequest) error {
	var v apierr.Violations
	w := r.GetWorkload()
	if w == nil {
		v.Add("workload", "required: the workload's name and the new values of the fields in update_mask")
		return v.Err()
	}
	checkName(&v, "workload.name", w.GetName())
	checkEtag(&v, "workload.etag", w.GetEtag())
	checkSize(&v, w)
	paths := r.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		v.Add("update_mask", "required: name the fields to change, e.g. {\"paths\": [\"role\", \"wave\"]}")
	}
	for i, p := range paths {
		if !updatable[p] {
			v.Add(fmt.Sprintf("update_mask.paths[%d]", i), "%q cannot be updated: updatable fields are display_name, role, stateful, wave, state, state_reason, labels, and facts and physical (physical workloads)", p)
			continue
		}
		switch p {
		case "display_name":
			checkText(&v, "workload.display_name", w.GetDisplayName(), maxDisplayName)
		case "role":
			checkRole(&v, "workload.role", w.GetRole())
		case "wave":
			checkWave(&v, "workload.wave", w.GetWave())
		case "state":
			if checkState(&v, "workload.state", w.GetState()) && w.GetState() == inventoryv1.WorkloadState_WORKLOAD_STATE_UNSPECIFIED {
				v.Add("workload.state", "state is in update_mask but unset: give the state to move to")
			}
		case "state_reason":
			checkText(&v, "workload.state_reason", w.GetStateReason(), maxStateReason)
		case "labels":
			checkLabels(&v, "workload.labels", w.GetLabels())
		case "facts":
			if w.GetFacts().GetInstance() != nil {
				v.Add("workload.facts.instance", "an instance's facts are written by syncs of its cloud, not by UpdateWorkload")
			}
		case "physical":
			if w.GetPhysical() == nil {
				v.Add("workload.physical", "physical is in update_mask but unset: give the physical server's source (hostname, addresses, p2v, flavor)")
			} else {
				checkSource(&v, w)
			}
		}
	}
	return v.Err()
}

// checkFacts allows physical facts on a physical workload only; an instance's facts
// come from syncs.
func checkFacts(v *apierr.Violations, path string, w *inventoryv1.Workload) {
	switch {
	case w.GetFacts().GetInstance() != nil:
		v.Add(path+".instance", "an instance's facts are written by syncs of its cloud: leave them out")
	case w.GetFacts().GetPhysical() != nil && w.GetPhysical() == nil:
		v.Add(path+".physical", "physical facts belong to a workload with a physical source")
	}
}

// ValidateDeleteWorkload checks a DeleteWorkloadRequest.
func ValidateDeleteWorkload(r *inventoryv1.DeleteWorkloadRequest) error {
	var v apierr.Violations
	checkName(&v, "name", r.GetName())
	checkEtag(&v, "etag", r.GetEtag())
	return v.Err()
}

// ValidateWatchWorkloads checks a WatchWorkloadsRequest.
func ValidateWatchWorkloads(r *inventoryv1.WatchWorkloadsRequest) error {
	var v apierr.Violations
	if r.GetStartRevision() < 0 {
		v.Add("start_revision", "%d: must be 0 (from now) or a revision from an earlier event", r.GetStartRevision())
	}
	if r.GetIncludeExisting() && r.GetStartRevision() > 0 {
		v.Add("include_existing", "cannot be combined with start_revision: resume with start_revision alone, or start over with include_existing alone")
	}
	return v.Err()
}
