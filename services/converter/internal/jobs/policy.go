package jobs

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// Policy is what a converter lets a job name: the least authority a worker that
// runs as root needs. The API checks it at CreateJob (INVALID_ARGUMENT naming the
// field), and the worker checks it again before it touches anything (another
// converter on the etcd may have taken the job under another policy).
type Policy struct {
	// Clouds are the clouds.yaml entries a job may name; empty: every entry.
	Clouds []string
	// DiskRoots are the directories P2V disk paths must lie under (after "..",
	// links and the like are resolved); empty: no disk path is taken.
	DiskRoots []string
	// DiskDevices are block devices a P2V job may name by path, one by one.
	DiskDevices []string
	// WorkDir is the worker's P2V work directory: never a source (it holds other
	// jobs' fetched disks).
	WorkDir string
	// AgentNetworks are where hikkoshi-p2v-agents may be (agent_url's host must be
	// an address in one of them); empty: no agent_url is taken.
	AgentNetworks []netip.Prefix
}

// ParseNetworks parses CIDRs (10.20.0.0/16) and addresses (a /32 or /128).
func ParseNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q: give a network (10.20.0.0/16) or an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Check adds a violation for each thing j names that this policy does not allow.
func (p Policy) Check(j *converterv1.Job, v *apierr.Violations) {
	cloud := func(field, name string) {
		if name != "" && len(p.Clouds) > 0 && !slices.Contains(p.Clouds, name) {
			v.Add(field, "%q is not a cloud this converter may use (its --clouds: %s)", name, strings.Join(p.Clouds, ", "))
		}
	}
	cloud("job.source.cloud", j.GetSource().GetCloud())
	cloud("job.destination.cloud", j.GetDestination().GetCloud())
	cloud("job.p2v_image.cloud", j.GetP2VImage().GetCloud())
	src := j.GetP2VSource()
	if src.GetDiskPath() != "" {
		if err := p.disk(src.GetDiskPath()); err != nil {
			v.Add("job.p2v_source.disk_path", "%v", err)
		}
	}
	for i, m := range src.GetMoreDiskPaths() {
		if err := p.disk(m); err != nil {
			v.Add(fmt.Sprintf("job.p2v_source.more_disk_paths[%d]", i), "%v", err)
		}
	}
	if src.GetAgentUrl() != "" {
		if err := p.agent(src.GetAgentUrl()); err != nil {
			v.Add("job.p2v_source.agent_url", "%v", err)
		}
	}
}

// Err is Check's violations as an error (nil when allowed).
func (p Policy) Err(j *converterv1.Job) error {
	var v apierr.Violations
	p.Check(j, &v)
	return v.Err()
}

// disk checks a P2V disk path: under a disk root once resolved, a regular file (a
// block device only when named in DiskDevices), not in the work directory. Nothing
// outside the roots is looked at (no probing of the worker's files).
func (p Policy) disk(path string) error {
	if strings.ContainsRune(path, 0) {
		return fmt.Errorf("a NUL byte in a path")
	}
	clean := filepath.Clean(path)
	if slices.Contains(p.DiskDevices, clean) {
		if fi, err := os.Stat(clean); err != nil || fi.Mode()&os.ModeDevice == 0 {
			return fmt.Errorf("%q is not a block device on this converter", clean)
		}
		return nil
	}
	if len(p.DiskRoots) == 0 {
		return fmt.Errorf("this converter takes no disk paths: its operator names the directories (--p2v-disk-root) or devices (--p2v-disk-device) it may read, or use agent_url")
	}
	under := func(path string, roots []string) bool {
		for _, r := range roots {
			if rel, err := filepath.Rel(r, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && rel != "." {
				return true
			}
		}
		return false
	}
	roots := make([]string, 0, len(p.DiskRoots))
	for _, r := range p.DiskRoots {
		if rr, err := filepath.EvalSymlinks(r); err == nil {
			roots = append(roots, rr)
		}
	}
	msg := fmt.Errorf("%q is not a disk image under this converter's disk roots (%s)", clean, strings.Join(p.DiskRoots, ", "))
	if !under(clean, p.DiskRoots) && !under(clean, roots) {
		return msg
	}
	real, err := filepath.EvalSymlinks(clean)
	if err != nil || !under(real, roots) {
		return msg
	}
	if p.WorkDir != "" {
		if wd, err := filepath.EvalSymlinks(p.WorkDir); err == nil && (under(real, []string{wd}) || real == wd) {
			return msg
		}
	}
	if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
		return msg
	}
	return nil
}

// agent checks that agent_url's host is an address in AgentNetworks.
func (p Policy) agent(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	host := u.Hostname()
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("give the agent's address (http://10.0.0.5:7420), not a name")
	}
	a = a.Unmap()
	for _, n := range p.AgentNetworks {
		if n.Contains(a) {
			return nil
		}
	}
	if len(p.AgentNetworks) == 0 {
		return fmt.Errorf("this converter fetches from no agent: its operator names the networks agents may be on (--p2v-agent-network)")
	}
	nets := make([]string, len(p.AgentNetworks))
	for i, n := range p.AgentNetworks {
		nets[i] = n.String()
	}
	return fmt.Errorf("%s is not on a network agents may be on (%s)", net.IP(a.AsSlice()), strings.Join(nets, ", "))
}
