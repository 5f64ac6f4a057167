package jobs

// A V2V job's Cinder volumes: planned at the pre-flight (the source server's
// attachments, in the guest's device order, the boot volume first), moved after the
// stop (JOB_STEP_VOLUMES), attached to the new server at its boot, and deleted with
// everything the job made when it fails or is cancelled.
//
// One volume's way, each made thing recorded in the job's VolumeMove before the next
// call, so that a worker taking the job over goes on where the last one stopped:
//
//  1. a snapshot of the source volume (force: the volume is attached; the server is
//     stopped, so its bytes are at rest), a volume made from that snapshot, uploaded
//     to an image in the source Glance (Cinder uploads volumes, not snapshots; an
//     attached volume only with force, which clouds turn off by default), as
//     qcow2: the blocks in use, without the zeros of a thin volume;
//  2. that image copied to the destination Glance by the same streaming,
//     checksummed, resumable copy as a server's image (imagecopy);
//  3. a new volume made from the copy in the destination Cinder: the source's size,
//     name and (mapped) type;
//  4. the snapshot, the temporary volume and both images deleted: only the new
//     volume stays.
//
// Each of those is named hikkoshi-<job>-vol<i> (the new volume carries the job's ID
// in its metadata instead, and the source volume's name): a call whose answer was
// lost left something a later try adopts and a clean-up finds.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/osapi"
)

// volumePartName names what the job makes for its i-th volume.
func volumePartName(jobID string, i int) string { return fmt.Sprintf("hikkoshi-%s-vol%d", jobID, i) }

// planVolumes reads the source server's volumes into the job (once: a job taken over
// keeps its record, and fails if the server's volumes changed meanwhile) and checks
// the destination: its Cinder, the volume types and the volume quota. It returns what
// the destination lacks.
func (t *task) planVolumes(ctx context.Context, srv *servers.Server) ([]string, error) {
	j, src, dst, pl := t.j, t.src, t.dst, t.pl
	atts, err := osapi.ListVolumeAttachments(ctx, src.compute, srv.ID)
	if err != nil {
		return nil, fmt.Errorf("source server %s volume attachments: %w", srv.ID, err)
	}
	imageID, _ := srv.Image["id"].(string)
	if len(atts) == 0 {
		if imageID == "" {
			return nil, fmt.Errorf("source server %s has neither an image nor a volume to boot from", srv.ID)
		}
		return nil, nil
	}
	if src.volume == nil {
		return nil, fmt.Errorf("the source server has %d volumes, but source cloud %q lists no block-storage service", len(atts), j.GetSource().GetCloud())
	}
	if dst.volume == nil {
		return nil, fmt.Errorf("the source server has %d volumes, but destination cloud %q lists no block-storage service", len(atts), j.GetDestination().GetCloud())
	}
	slices.SortFunc(atts, func(a, b volumeattach.VolumeAttachment) int { return strings.Compare(a.Device, b.Device) })
	var moves []*converterv1.VolumeMove
	for _, a := range atts {
		v, err := osapi.GetVolume(ctx, src.volume, a.VolumeID)
		if err != nil {
			return nil, fmt.Errorf("source volume %s: %w", a.VolumeID, err)
		}
		moves = append(moves, &converterv1.VolumeMove{
			SourceVolumeId: v.ID, Name: v.Name, SizeGb: int32(v.Size), Device: a.Device, SourceType: v.VolumeType,
		})
	}
	if imageID == "" {
		// Booted from a volume: the one at the root device; where Nova does not show
		// that (admin only), the first device.
		boot := 0
		if srv.RootDeviceName != nil {
			boot = max(0, slices.IndexFunc(moves, func(m *converterv1.VolumeMove) bool { return m.GetDevice() == *srv.RootDeviceName }))
		}
		moves[boot].Boot = true
		moves = append(append([]*converterv1.VolumeMove{moves[boot]}, moves[:boot]...), moves[boot+1:]...)
		pl.bootVolume = true
		if j.GetSource().GetWarm() {
			return nil, fmt.Errorf("source.warm: the server boots from volume %s; a warm pre-copy copies an image-backed root disk only: move it without warm", moves[0].GetSourceVolumeId())
		}
	}
	if len(j.GetVolumes()) == 0 {
		j.Volumes = moves
	} else if !sameVolumes(j.GetVolumes(), moves) {
		return nil, fmt.Errorf("the source server's volumes changed since the job planned them (%s, now %s): cancel the job and start it again",
			describeVolumes(j.GetVolumes()), describeVolumes(moves))
	}

	var missing []string
	types, err := osapi.ListVolumeTypes(ctx, dst.volume)
	if err != nil {
		return nil, fmt.Errorf("destination volume types: %w", err)
	}
	have := map[string]bool{}
	for _, vt := range types {
		have[vt.Name] = true
	}
	need, gb := 0, 0
	for _, m := range j.GetVolumes() {
		dt := m.GetSourceType()
		if mapped, ok := j.GetDestination().GetVolumeTypes()[dt]; ok {
			dt = mapped
		}
		m.DestinationType = dt
		if dt != "" && !have[dt] {
			hint := ""
			if dt == m.GetSourceType() {
				hint = fmt.Sprintf(" (map it: destination.volume_types {%q: <a destination type>})", dt)
			}
			missing = append(missing, fmt.Sprintf("volume type %q for volume %s%s", dt, m.GetSourceVolumeId(), hint))
		}
		if m.GetDestinationVolumeId() == "" {
			need++
			gb += int(m.GetSizeGb())
		}
	}
	if need > 0 && len(missing) == 0 {
		short, err := t.volumeQuota(ctx, need, gb)
		if err != nil {
			return nil, err
		}
		if len(short) > 0 {
			return nil, fmt.Errorf("the destination project's volume quota is too small: %s", strings.Join(short, "; "))
		}
	}
	return missing, nil
}

func sameVolumes(a, b []*converterv1.VolumeMove) bool {
	return slices.EqualFunc(a, b, func(x, y *converterv1.VolumeMove) bool {
		return x.GetSourceVolumeId() == y.GetSourceVolumeId() && x.GetDevice() == y.GetDevice()
	})
}

func describeVolumes(ms []*converterv1.VolumeMove) string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.GetSourceVolumeId()+" at "+m.GetDevice())
	}
	return strings.Join(out, ", ")
}

// volumeQuota reports what need new volumes of gb GiB in all would exceed in the
// destination project's Cinder quota (volumes, gigabytes); a quota the project may
// not read is not checked.
func (t *task) volumeQuota(ctx context.Context, need, gb int) ([]string, error) {
	q, err := osapi.VolumeQuota(ctx, t.dst.volume, t.dst.project)
	switch {
	case err != nil && (osapi.NotFound(err) || osapi.Forbidden(err)):
		t.Log.Info("the destination's volume quota is not readable by this project; not checked", "cloud", t.j.GetDestination().GetCloud())
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("destination volume quota: %w", err)
	}
	var short []string
	over := func(what string, used, limit, n int, unit string) {
		if limit >= 0 && used+n > limit {
			short = append(short, fmt.Sprintf("%s: %d%s in use of %d, the volumes need %d%s", what, used, unit, limit, n, unit))
		}
	}
	over("volumes", q.Volumes.InUse+q.Volumes.Reserved, q.Volumes.Limit, need, "")
	over("gigabytes", q.Gigabytes.InUse+q.Gigabytes.Reserved, q.Gigabytes.Limit, gb, " GiB")
	return short, nil
}

// moveVolumes moves each volume not moved yet, in order.
func (t *task) moveVolumes(ctx context.Context) error {
	for i, m := range t.j.GetVolumes() {
		if m.GetDone() {
			continue
		}
		if err := t.moveVolume(ctx, i, m); err != nil {
			return fmt.Errorf("volume %s (%s): %w", m.GetSourceVolumeId(), m.GetDevice(), err)
		}
	}
	return nil
}

func (t *task) moveVolume(ctx context.Context, i int, m *converterv1.VolumeMove) error {
	r, j, id, src, dst, save := t.Runner, t.j, t.id, t.src, t.dst, t.save
	name := volumePartName(id, i)
	md := map[string]string{"hikkoshi_job": id}
	volumeStatus := func(c *gophercloud.ServiceClient, vid string) func() (string, error) {
		return func() (string, error) {
			v, err := osapi.GetVolume(ctx, c, vid)
			if err != nil {
				return "", err
			}
			return v.Status, nil
		}
	}
	// 1. The volume's bytes as an image in the source Glance.
	if m.GetSourceImageId() == "" {
		if m.GetSourceSnapshotId() == "" {
			found, err := osapi.ListSnapshots(ctx, src.volume, snapshots.ListOpts{Name: name, VolumeID: m.GetSourceVolumeId()})
			if err != nil {
				return fmt.Errorf("list the job's snapshots: %w", err)
			}
			if len(found) > 0 {
				m.SourceSnapshotId = found[0].ID // made by a call whose answer was lost
			} else {
				s, err := osapi.CreateSnapshot(ctx, src.volume, snapshots.CreateOpts{
					VolumeID: m.GetSourceVolumeId(), Force: true, Name: name, Metadata: md,
					Description: "hikkoshi job " + id + ": the volume's bytes at the stop, for the move",
				})
				if err != nil {
					return fmt.Errorf("snapshot: %w", err)
				}
				m.SourceSnapshotId = s.ID
			}
			if err := save(ctx, j); err != nil {
				return err
			}
		}
		if err := r.wait(ctx, "source volume snapshot "+m.GetSourceSnapshotId(), func() (string, error) {
			s, err := osapi.GetSnapshot(ctx, src.volume, m.GetSourceSnapshotId())
			if err != nil {
				return "", err
			}
			return s.Status, nil
		}, "available", "error", "error_deleting"); err != nil {
			return err
		}
		if m.GetSourceTempVolumeId() == "" {
			found, err := osapi.ListVolumes(ctx, src.volume, volumes.ListOpts{Name: name})
			if err != nil {
				return fmt.Errorf("list the job's temporary volumes: %w", err)
			}
			if len(found) > 0 {
				m.SourceTempVolumeId = found[0].ID
			} else {
				v, err := osapi.CreateVolume(ctx, src.volume, volumes.CreateOpts{
					Size: int(m.GetSizeGb()), SnapshotID: m.GetSourceSnapshotId(), Name: name, Metadata: md,
					Description: "hikkoshi job " + id + ": uploaded to an image for the move, then deleted",
				})
				if err != nil {
					return fmt.Errorf("volume from the snapshot: %w", err)
				}
				m.SourceTempVolumeId = v.ID
			}
			if err := save(ctx, j); err != nil {
				return err
			}
		}
		if err := r.wait(ctx, "source temporary volume "+m.GetSourceTempVolumeId(), volumeStatus(src.volume, m.GetSourceTempVolumeId()),
			"available", "error"); err != nil {
			return err
		}
		found, err := osapi.ListImages(ctx, src.image, images.ListOpts{Name: name})
		if err != nil {
			return fmt.Errorf("list the job's volume images: %w", err)
		}
		if len(found) > 0 {
			m.SourceImageId = found[0].ID
		} else {
			// qcow2: Cinder converts the volume with qemu-img, so the image holds the
			// blocks in use and no zeros — a thin volume crosses the link at its
			// used size. A cloud that refuses qcow2 uploads gets raw.
			img, err := osapi.UploadVolume(ctx, src.volume, m.GetSourceTempVolumeId(), volumes.UploadImageOpts{
				ImageName: name, DiskFormat: "qcow2", ContainerFormat: "bare",
			})
			if osapi.BadRequest(err) {
				t.Log.Info("the source Cinder refuses a qcow2 upload: raw", "volume", m.GetSourceTempVolumeId(), "error", err)
				img, err = osapi.UploadVolume(ctx, src.volume, m.GetSourceTempVolumeId(), volumes.UploadImageOpts{
					ImageName: name, DiskFormat: "raw", ContainerFormat: "bare",
				})
			}
			if err != nil {
				return fmt.Errorf("upload to an image: %w", err)
			}
			m.SourceImageId = img
		}
		if err := save(ctx, j); err != nil {
			return err
		}
	}
	if m.GetImageId() == "" {
		if err := r.wait(ctx, "source volume image "+m.GetSourceImageId(), imageStatus(ctx, src.image, m.GetSourceImageId()),
			"active", "killed", "deleted"); err != nil {
			return err
		}
		// 2. The copy.
		if m.Progress == nil {
			m.Progress = &converterv1.CopyProgress{}
		}
		c := r.copier(src, dst, func(ctx context.Context, p *converterv1.CopyProgress) error {
			m.Progress = p
			return save(ctx, j)
		})
		imgID, err := c.Copy(ctx, m.GetSourceImageId(), name, m.Progress)
		if err != nil {
			return err
		}
		m.ImageId = imgID
		if err := save(ctx, j); err != nil {
			return err
		}
	}
	// 3. The new volume.
	if m.GetDestinationVolumeId() == "" {
		found, err := osapi.ListVolumes(ctx, dst.volume, volumes.ListOpts{Metadata: map[string]string{"hikkoshi_job": id, "hikkoshi_volume": fmt.Sprint(i)}})
		if err != nil {
			return fmt.Errorf("list the job's new volumes: %w", err)
		}
		if len(found) > 0 {
			m.DestinationVolumeId = found[0].ID
		} else {
			v, err := osapi.CreateVolume(ctx, dst.volume, volumes.CreateOpts{
				Size: int(m.GetSizeGb()), ImageID: m.GetImageId(), VolumeType: m.GetDestinationType(), Name: m.GetName(),
				Description: "moved by hikkoshi job " + id + " from volume " + m.GetSourceVolumeId(),
				Metadata:    map[string]string{"hikkoshi_job": id, "hikkoshi_volume": fmt.Sprint(i), "hikkoshi_source_volume": m.GetSourceVolumeId()},
			})
			if err != nil {
				return fmt.Errorf("the new volume: %w", err)
			}
			m.DestinationVolumeId = v.ID
		}
		if err := save(ctx, j); err != nil {
			return err
		}
	}
	if err := r.wait(ctx, "new volume "+m.GetDestinationVolumeId(), volumeStatus(dst.volume, m.GetDestinationVolumeId()),
		"available", "error"); err != nil {
		return err
	}
	// 4. Only the new volume stays.
	if err := t.dropVolumeParts(ctx, m, false); err != nil {
		return err
	}
	m.Done = true
	return save(ctx, j)
}

// dropVolumeParts deletes what the job made to move one volume — both images, the
// temporary volume, the snapshot — and, with andNew, the new volume too. Each is
// waited for until it is gone (a volume still uploading or detaching is asked again).
func (t *task) dropVolumeParts(ctx context.Context, m *converterv1.VolumeMove, andNew bool) error {
	r, src, dst := t.Runner, t.src, t.dst
	var errs []error
	if m.GetImageId() != "" {
		errs = append(errs, imagecopy.NewGlance(dst.image).Delete(ctx, m.GetImageId()))
	}
	if m.GetProgress() != nil {
		errs = append(errs, (&imagecopy.Copier{Dst: imagecopy.NewGlance(dst.image)}).Discard(ctx, m.GetProgress()))
	}
	if m.GetSourceImageId() != "" {
		errs = append(errs, imagecopy.NewGlance(src.image).Delete(ctx, m.GetSourceImageId()))
	}
	if andNew && m.GetDestinationVolumeId() != "" {
		errs = append(errs, r.deleteVolume(ctx, dst.volume, m.GetDestinationVolumeId()))
	}
	if m.GetSourceTempVolumeId() != "" {
		errs = append(errs, r.deleteVolume(ctx, src.volume, m.GetSourceTempVolumeId()))
	}
	if m.GetSourceSnapshotId() != "" {
		errs = append(errs, r.deleteSnapshot(ctx, src.volume, m.GetSourceSnapshotId()))
	}
	return errors.Join(errs...)
}

// deleteVolume deletes a volume and waits until Cinder no longer has it.
func (r *Runner) deleteVolume(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return r.deleteUntilGone(ctx, "volume "+id, func() (string, error) {
		v, err := osapi.GetVolume(ctx, c, id)
		if err != nil {
			return "", err
		}
		return v.Status, nil
	}, func() error { return osapi.DeleteVolume(ctx, c, id) })
}

// deleteSnapshot deletes a volume snapshot and waits until Cinder no longer has it.
func (r *Runner) deleteSnapshot(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return r.deleteUntilGone(ctx, "volume snapshot "+id, func() (string, error) {
		s, err := osapi.GetSnapshot(ctx, c, id)
		if err != nil {
			return "", err
		}
		return s.Status, nil
	}, func() error { return osapi.DeleteSnapshot(ctx, c, id) })
}

// deleteUntilGone asks Cinder to delete something until it is gone: its refusal
// while the thing is busy (uploading, detaching, a snapshot's volume being made:
// 400) is asked again at the next look.
func (r *Runner) deleteUntilGone(ctx context.Context, what string, status func() (string, error), del func() error) error {
	return r.wait(ctx, "delete "+what, func() (string, error) {
		st, err := status()
		switch {
		case osapi.NotFound(err):
			return "gone", nil
		case err != nil:
			return "", err
		case st != "deleting":
			if err := del(); err != nil && !osapi.NotFound(err) && !osapi.BadRequest(err) {
				return "", err
			}
		}
		return st, nil
	}, "gone")
}

// volumeBDMs are the new server's block devices: its boot volume (boot index 0) or
// its image, then its other volumes, in order; devices are their source devices
// (withDeviceNames puts them in: gophercloud's BlockDevice has no device_name).
func volumeBDMs(j *converterv1.Job, imageID string) ([]servers.BlockDevice, []string) {
	if len(j.GetVolumes()) == 0 {
		return nil, nil
	}
	var bdms []servers.BlockDevice
	var devices []string
	if imageID != "" {
		bdms = append(bdms, servers.BlockDevice{
			SourceType: servers.SourceImage, UUID: imageID, BootIndex: 0,
			DestinationType: servers.DestinationLocal, DeleteOnTermination: true,
		})
		devices = append(devices, "")
	}
	for _, m := range j.GetVolumes() {
		b := servers.BlockDevice{
			SourceType: servers.SourceVolume, DestinationType: servers.DestinationVolume,
			UUID: m.GetDestinationVolumeId(), BootIndex: -1,
		}
		if m.GetBoot() {
			b.BootIndex = 0
		}
		bdms = append(bdms, b)
		devices = append(devices, m.GetDevice())
	}
	return bdms, devices
}

// withDeviceNames adds device_name to the block_device_mapping_v2 entries of a
// server create request, in order ("" leaves one without).
type withDeviceNames struct {
	servers.CreateOptsBuilder
	devices []string
}

func (w withDeviceNames) ToServerCreateMap() (map[string]any, error) {
	m, err := w.CreateOptsBuilder.ToServerCreateMap()
	if err != nil {
		return nil, err
	}
	srv, _ := m["server"].(map[string]any)
	var bdms []map[string]any
	switch l := srv["block_device_mapping_v2"].(type) {
	case []map[string]any:
		bdms = l
	case []any:
		for _, e := range l {
			if b, ok := e.(map[string]any); ok {
				bdms = append(bdms, b)
			}
		}
	}
	if len(bdms) != len(w.devices) {
		return nil, fmt.Errorf("block devices: %d entries, %d device names", len(bdms), len(w.devices))
	}
	for i, d := range w.devices {
		if d != "" {
			bdms[i]["device_name"] = d
		}
	}
	return m, nil
}

// cleanupVolumes deletes, for a failed or cancelled job, every volume part it made
// and the new volumes — those recorded, and those a lost answer left (found by name
// and by the job's metadata).
func (t *task) cleanupVolumes(ctx context.Context) error {
	j, id, src, dst := t.j, t.id, t.src, t.dst
	var errs []error
	for i, m := range j.GetVolumes() {
		name := volumePartName(id, i)
		// A list that fails is reported: what it would have found may be left.
		if src.image != nil {
			found, err := osapi.ListImages(ctx, src.image, images.ListOpts{Name: name})
			errs = append(errs, err)
			for _, img := range found {
				errs = append(errs, imagecopy.NewGlance(src.image).Delete(ctx, img.ID))
			}
		}
		if src.volume != nil {
			found, err := osapi.ListVolumes(ctx, src.volume, volumes.ListOpts{Name: name})
			errs = append(errs, err)
			for _, v := range found {
				errs = append(errs, t.deleteVolume(ctx, src.volume, v.ID))
			}
			snaps, err := osapi.ListSnapshots(ctx, src.volume, snapshots.ListOpts{Name: name, VolumeID: m.GetSourceVolumeId()})
			errs = append(errs, err)
			for _, sn := range snaps {
				errs = append(errs, t.deleteSnapshot(ctx, src.volume, sn.ID))
			}
		}
		errs = append(errs, t.dropVolumeParts(ctx, m, true))
	}
	if dst.volume != nil && len(j.GetVolumes()) > 0 {
		found, err := osapi.ListVolumes(ctx, dst.volume, volumes.ListOpts{Metadata: map[string]string{"hikkoshi_job": id}})
		if err != nil {
			errs = append(errs, fmt.Errorf("list the job's destination volumes: %w", err))
		}
		for _, v := range found {
			errs = append(errs, t.deleteVolume(ctx, dst.volume, v.ID))
		}
	}
	return errors.Join(errs...)
}
