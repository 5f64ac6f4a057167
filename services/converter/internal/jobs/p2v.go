package jobs

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/osapi"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v/agent"
)

// IsP2V reports whether j converts a physical server's disk.
func IsP2V(j *converterv1.Job) bool { return j.GetP2VSource() != nil }

func inspectionProto(d *p2v.Disk, a *p2v.Analysis) *converterv1.Inspection {
	in := &converterv1.Inspection{}
	if d != nil {
		in.PartitionTable = d.Label
		for _, p := range d.Partitions {
			in.Partitions = append(in.Partitions, &converterv1.InspectedPartition{Number: int32(p.Number), FsType: p.FSType, Uuid: p.UUID,
				Label: p.Label, MountPoint: p.MountPoint, SizeBytes: p.Size, UsedBytes: p.UsedBytes, LogicalVolume: p.Volume, Disk: int32(p.Disk)})
		}
	}
	if a != nil {
		in.OsId, in.OsFamily, in.OsVersion, in.OsPretty = a.OS.ID, a.OS.Family, a.OS.Version, a.OS.Pretty
		in.Kernels, in.InitramfsTool, in.Bootloader, in.CloudInit, in.Problems, in.Firmware = a.Kernels, a.InitramfsTool, a.Bootloader, a.CloudInit, a.Problems, a.Firmware
		in.PowerButton = a.PowerButton
		in.FirmwareType = firmwareType(a.Firmware)
		in.SshHostKeys = a.SSHHostKeys
		for _, n := range a.Network {
			in.Network = append(in.Network, &converterv1.NetworkConfig{Kind: n.Kind, Files: n.Files, Interfaces: n.Interfaces})
		}
	}
	return in
}

func (r *Runner) p2vWork(id string) string {
	root := r.P2VWork
	if root == "" {
		root = DefaultP2VWork
	}
	return filepath.Join(root, id)
}

// DefaultP2VWork is where P2V jobs build their disks.
const DefaultP2VWork = "/var/lib/hikkoshi/p2v"

// runP2V runs a P2V job: inspect (read-only), build the image on this worker, upload
// it. A worker taking the job over builds again (the image was on the other's disk)
// unless the upload had finished.
func (r *Runner) runP2V(ctx context.Context, j *converterv1.Job, id string, save func(context.Context, *converterv1.Job) error) (err error) {
	src := j.GetP2VSource()
	if j.P2VResult == nil {
		j.P2VResult = &converterv1.P2VResult{}
	}
	if j.Created == nil {
		j.Created = &converterv1.Created{}
	}
	if r.uploaded(ctx, j) {
		return nil // uploaded before this worker took the job over: not fetched, read and built again
	}
	work := r.p2vWork(id)
	defer os.RemoveAll(work)
	step := func(s converterv1.JobStep) error { j.Step = s; return save(ctx, j) }
	diskPath, more := src.GetDiskPath(), src.GetMoreDiskPaths()
	if src.GetAgentUrl() != "" {
		if err := step(converterv1.JobStep_JOB_STEP_FETCH); err != nil {
			return err
		}
		paths, err := r.fetch(ctx, j, work, save)
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		diskPath, more = paths[0], paths[1:]
	}
	if err := step(converterv1.JobStep_JOB_STEP_INSPECT); err != nil {
		return err
	}
	d, a, err := p2v.Inspect(ctx, diskPath, filepath.Join(work, "inspect"), more...)
	j.P2VResult.Inspection = inspectionProto(d, a)
	if err != nil {
		_ = save(ctx, j)
		return fmt.Errorf("inspect: %w", err)
	}
	if err := save(ctx, j); err != nil || src.GetInspectOnly() {
		return err
	}
	ic, err := r.open(ctx, j.GetP2VImage().GetCloud())
	if err != nil {
		return fmt.Errorf("image cloud %q: %w", j.GetP2VImage().GetCloud(), err)
	}
	if err := step(converterv1.JobStep_JOB_STEP_BUILD); err != nil {
		return err
	}
	nics, err := p2v.ParseNICs(src.GetNics())
	if err != nil {
		return err
	}
	res, err := p2v.Convert(ctx, diskPath, p2v.Options{Work: filepath.Join(work, "build"), MoreDisks: more, NICs: nics, CloudInitDebs: r.CloudInitDebs,
		KeyPairUser: j.GetP2VSource().GetKeyPairUser(), Log: r.Log})
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	pr := j.P2VResult
	pr.RootUuid, pr.VirtualBytes, pr.Notes, pr.TimingsMs, pr.Firmware = res.RootUUID, res.Size, res.Notes, res.Timings, res.Firmware
	pr.FirmwareType = firmwareType(res.Firmware)
	if fi, err := os.Stat(res.Image); err == nil {
		pr.ImageBytes = fi.Size()
	}
	if err := step(converterv1.JobStep_JOB_STEP_UPLOAD); err != nil {
		return err
	}
	g := imagecopy.NewGlance(ic.image)
	name := p2vImageName(j, id)
	// A half-made upload of an earlier attempt, recorded or not (a worker may die
	// between the image's creation and its record).
	if err := deleteP2VImages(ctx, g, j, id); err != nil {
		return fmt.Errorf("upload: delete an earlier attempt's image: %w", err)
	}
	props := map[string]string{"hw_disk_bus": "virtio", "hw_vif_model": "virtio", "hikkoshi_job": id, "hw_serial_port_count": "1"}
	if a.OS.ID != "" {
		props["os_distro"], props["os_version"] = a.OS.ID, a.OS.Version
	}
	if res.Firmware == "uefi" {
		props["hw_firmware_type"] = "uefi" // Nova boots it with OVMF
	}
	img, err := g.Create(ctx, images.CreateOpts{Name: name, DiskFormat: "qcow2", ContainerFormat: "bare",
		MinDisk: int(math.Ceil(float64(res.Size) / (1 << 30))), Properties: props, Tags: []string{"hikkoshi-p2v"}})
	if err != nil {
		return fmt.Errorf("upload: create the image: %w", err)
	}
	j.Created.ImageId = img.ID
	if err := save(ctx, j); err != nil {
		return err
	}
	f, err := os.Open(res.Image)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha512.New()
	if err := g.Upload(ctx, img.ID, io.TeeReader(f, h)); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	pr.Sha512 = hex.EncodeToString(h.Sum(nil))
	up, err := g.Image(ctx, img.ID)
	if err != nil {
		return err
	}
	if v, _ := up.Properties["os_hash_value"].(string); v != "" && v != pr.Sha512 {
		return fmt.Errorf("upload: Glance's sha512 %s… differs from the image's %s…: the upload was corrupted", v[:16], pr.Sha512[:16])
	}
	return save(ctx, j)
}

// uploaded reports whether a P2V job taken over had uploaded its image whole
// already (it is ACTIVE in Glance).
func (r *Runner) uploaded(ctx context.Context, j *converterv1.Job) bool {
	if j.GetCreated().GetImageId() == "" {
		return false
	}
	ic, err := r.open(ctx, j.GetP2VImage().GetCloud())
	if err != nil {
		return false
	}
	img, err := osapi.GetImage(ctx, ic.image, j.GetCreated().GetImageId())
	return err == nil && img.Status == images.ImageStatusActive
}

// bootP2V boots a P2V job's image in its destination (the cloud its image went to):
// a pre-flight of the destination, the boot on the given port (or a new one), the
// health check — the same steps as a V2V job's last ones.
func (r *Runner) bootP2V(ctx context.Context, j *converterv1.Job, id string, save func(context.Context, *converterv1.Job) error) error {
	dst, err := r.open(ctx, j.GetDestination().GetCloud())
	if err != nil {
		return fmt.Errorf("destination cloud %q: %w", j.GetDestination().GetCloud(), err)
	}
	t := &task{Runner: r, j: j, id: id, dst: dst, save: save}
	if t.pl, err = t.p2vPreflight(ctx); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	for _, step := range []converterv1.JobStep{converterv1.JobStep_JOB_STEP_BOOT, converterv1.JobStep_JOB_STEP_HEALTH} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		j.Step = step
		if err := save(ctx, j); err != nil {
			return err
		}
		if step == converterv1.JobStep_JOB_STEP_BOOT {
			err = t.boot(ctx)
		} else {
			err = t.health(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", strings.ToLower(strings.TrimPrefix(step.String(), "JOB_STEP_")), err)
		}
	}
	return nil
}

// cleanupP2V deletes a failed or cancelled P2V job's image and its work directory
// (Convert has already undone its mounts and loop devices).
func (r *Runner) cleanupP2V(ctx context.Context, j *converterv1.Job) error {
	id, _ := ID(j.GetName())
	_ = os.RemoveAll(r.p2vWork(id))
	if j.GetP2VImage().GetCloud() == "" {
		return nil // a dry run: no image
	}
	ctx, cancel := context.WithTimeout(ctx, CleanupTimeout)
	defer cancel()
	var errs []error
	if j.GetDestination() != nil {
		// The server first: its image cannot go while a server boots from it.
		dst, err := r.open(ctx, j.GetDestination().GetCloud())
		if err != nil {
			return err
		}
		errs = append(errs, r.cleanupBoot(ctx, j, id, dst, p2vImageName(j, id)))
	}
	cl, err := r.open(ctx, j.GetP2VImage().GetCloud())
	if err != nil {
		return err
	}
	errs = append(errs, deleteP2VImages(ctx, imagecopy.NewGlance(cl.image), j, id))
	return errors.Join(errs...)
}

// p2vImageName is the name of a P2V job's image.
func p2vImageName(j *converterv1.Job, id string) string {
	if n := j.GetP2VImage().GetName(); n != "" {
		return n
	}
	return "p2v-" + id
}

// deleteP2VImages deletes the job's image: the one recorded, and any image of its
// name that carries the job's ID (hikkoshi_job) — one made by an attempt that did
// not live to record it.
func deleteP2VImages(ctx context.Context, g imagecopy.Glance, j *converterv1.Job, id string) error {
	var errs []error
	if old := j.GetCreated().GetImageId(); old != "" {
		errs = append(errs, g.Delete(ctx, old))
	}
	list, err := g.Named(ctx, p2vImageName(j, id))
	errs = append(errs, err)
	for _, img := range list {
		if img.Properties["hikkoshi_job"] == id && img.ID != j.GetCreated().GetImageId() {
			errs = append(errs, g.Delete(ctx, img.ID))
		}
	}
	return errors.Join(errs...)
}

// fetch copies the agent's disks (agent_disk, then more_agent_disks) into the work
// directory in verified chunks, the job's progress following (its total grows as
// each disk's size is learnt), and returns the copies' paths in the server's order.
// A broken or corrupted chunk is fetched again; zeros are holes.
func (r *Runner) fetch(ctx context.Context, j *converterv1.Job, work string, save func(context.Context, *converterv1.Job) error) ([]string, error) {
	src := j.GetP2VSource()
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, err
	}
	token := ""
	if r.AgentTokenFile != "" {
		b, err := os.ReadFile(r.AgentTokenFile)
		if err != nil {
			return nil, fmt.Errorf("the agent token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	c := &agent.Client{URL: src.GetAgentUrl(), Token: token}
	if strings.HasPrefix(src.GetAgentUrl(), "https:") {
		// Mutual TLS: the worker shows its own certificate, and trusts only an
		// agent certificate of the project's CA.
		if !r.AgentTLS.Set() {
			return nil, errors.New("an https agent_url needs this worker's certificate: start the converter with --tls-cert, --tls-key and --tls-ca")
		}
		tc, err := mtls.ClientConfig(r.AgentTLS)
		if err != nil {
			return nil, err
		}
		c.HTTP = agent.NewHTTPClient(tc)
	}
	if j.Progress == nil {
		j.Progress = &converterv1.CopyProgress{}
	}
	var paths []string
	var total, done, moved int64 // of the disks fetched before this one
	for i, d := range append([]int32{src.GetAgentDisk()}, src.GetMoreAgentDisks()...) {
		dst := filepath.Join(work, "fetched.raw")
		if i > 0 {
			dst = filepath.Join(work, fmt.Sprintf("fetched-%d.raw", i))
		}
		p := &agent.Progress{}
		err := c.Fetch(ctx, int(d), dst, p, func(p *agent.Progress) error {
			j.Progress.TotalBytes, j.Progress.DoneBytes, j.Progress.TransferredBytes = total+p.Size, done+min(p.Verified*p.ChunkSize, p.Size), moved+p.Transferred
			return save(ctx, j)
		})
		if err != nil {
			return nil, fmt.Errorf("agent disk %d: %w", d, err)
		}
		total, done, moved = total+p.Size, done+p.Size, moved+p.Transferred
		paths = append(paths, dst)
	}
	return paths, nil
}

// firmwareType is the API's enum of a firmware word of package p2v.
func firmwareType(f string) converterv1.Firmware {
	switch f {
	case "bios":
		return converterv1.Firmware_FIRMWARE_BIOS
	case "uefi":
		return converterv1.Firmware_FIRMWARE_UEFI
	}
	return converterv1.Firmware_FIRMWARE_UNSPECIFIED
}
