package jobs

// Clean-up and decommission: what a failed or cancelled job made is deleted and
// the source started again; a succeeded job's source is deleted on request.

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/osapi"
)

// Cleanup deletes what the job made, in both clouds, and starts the source again if
// the job stopped it. Besides what the job recorded it looks for what a call cut
// short may have made unrecorded — by the names and metadata the job gives its
// resources — and it waits for a snapshot still being taken to end before it
// deletes the snapshot and starts the server. It is safe to run again.
func (r *Runner) Cleanup(ctx context.Context, j *converterv1.Job) error {
	if IsP2V(j) {
		return r.cleanupP2V(ctx, j)
	}
	c := j.GetCreated()
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, CleanupTimeout)
	defer cancel()
	id, _ := ID(j.GetName())
	var errs []error
	dst, err := r.open(ctx, j.GetDestination().GetCloud())
	if err != nil {
		return err
	}
	src, err := r.open(ctx, j.GetSource().GetCloud())
	if err != nil {
		return err
	}
	// Destination: the server(s), then the port(s), then the images. The job names
	// the destination server after the source; only when the source is gone is the
	// whole project listed.
	name := ""
	if s, err := osapi.GetServer(ctx, src.compute, j.GetSource().GetServerId()); err == nil {
		name = s.Name
	}
	errs = append(errs, r.cleanupBoot(ctx, j, id, dst, name))
	// The volumes: after the server, whose deletion detaches them.
	errs = append(errs, (&task{Runner: r, j: j, id: id, src: src, dst: dst}).cleanupVolumes(ctx))
	dg := imagecopy.NewGlance(dst.image)
	if c.GetImageId() != "" {
		errs = append(errs, dg.Delete(ctx, c.GetImageId()))
	}
	if p := j.GetProgress(); p != nil {
		errs = append(errs, (&imagecopy.Copier{Dst: dg}).Discard(ctx, p))
	}
	if wp := j.GetWarm(); wp != nil {
		// A warm job's packs and manifests, and a final image begun unrecorded.
		errs = append(errs, (&imagecopy.Warm{Dst: dg}).Discard(ctx, wp),
			(&imagecopy.Copier{Dst: dg}).Discard(ctx, &converterv1.CopyProgress{ImageName: wp.GetImageName()}))
	}
	// Source: let a snapshot being taken end, delete it, start the server again.
	if err := r.wait(ctx, "the source server's task to end", func() (string, error) {
		s, err := osapi.GetServer(ctx, src.compute, j.GetSource().GetServerId())
		if osapi.NotFound(err) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		return s.TaskState, nil
	}, ""); err != nil {
		errs = append(errs, err)
	}
	snaps := map[string]bool{}
	for _, sid := range []string{c.GetSnapshotImageId(), c.GetPrecopySnapshotImageId()} {
		if sid != "" {
			snaps[sid] = true
		}
	}
	sg := imagecopy.NewGlance(src.image)
	if list, err := osapi.ListImages(ctx, src.image, images.ListOpts{Name: snapshotName(id)}); err == nil {
		for _, img := range list {
			snaps[img.ID] = true
		}
	} else {
		errs = append(errs, fmt.Errorf("list source snapshots: %w", err))
	}
	for sid := range snaps {
		errs = append(errs, sg.Delete(ctx, sid))
	}
	if c.GetStoppedSource() {
		errs = append(errs, r.startAgain(ctx, src.compute, j.GetSource().GetServerId()))
	}
	return errors.Join(errs...)
}

// cleanupBoot deletes what a job's boot made in its destination: its server(s) —
// the one recorded, and any named name ("" for any name) that carries the job's ID
// in its metadata (made by a call cut short) — then the port(s) it made. A port it
// was given stays.
func (r *Runner) cleanupBoot(ctx context.Context, j *converterv1.Job, id string, dst clients, name string) error {
	c := j.GetCreated()
	var errs []error
	srvIDs := map[string]bool{}
	if c.GetServerId() != "" {
		srvIDs[c.GetServerId()] = true
	}
	// Nova filters by name (a regex).
	listOpts := servers.ListOpts{}
	if name != "" {
		listOpts.Name = "^" + regexp.QuoteMeta(name) + "$"
	}
	if list, err := osapi.ListServers(ctx, dst.compute, listOpts); err == nil {
		for _, s := range list {
			if s.Metadata["hikkoshi_job"] == id {
				srvIDs[s.ID] = true
			}
		}
	} else {
		errs = append(errs, fmt.Errorf("list destination servers: %w", err))
	}
	for sid := range srvIDs {
		errs = append(errs, r.deleteServer(ctx, dst.compute, sid))
	}
	portIDs := map[string]bool{}
	if c.GetPortId() != "" {
		portIDs[c.GetPortId()] = true
	}
	for _, pid := range c.GetPortIds() {
		if pid != "" {
			portIDs[pid] = true
		}
	}
	for i, n := range j.GetDestination().GetNics() {
		if n.GetPortId() != "" {
			continue
		}
		// A port whose create answer was lost: found by its name.
		if list, err := osapi.ListPorts(ctx, dst.network, ports.ListOpts{Name: nicPortName(id, i), NetworkID: n.GetNetworkId()}); err == nil {
			for _, p := range list {
				portIDs[p.ID] = true
			}
		} else {
			errs = append(errs, fmt.Errorf("list destination ports: %w", err))
		}
	}
	if list, err := osapi.ListPorts(ctx, dst.network, ports.ListOpts{Name: portName(id), NetworkID: j.GetDestination().GetNetworkId()}); err == nil {
		for _, p := range list {
			portIDs[p.ID] = true
		}
	} else {
		errs = append(errs, fmt.Errorf("list destination ports: %w", err))
	}
	for pid := range portIDs {
		if err := osapi.DeletePort(ctx, dst.network, pid); err != nil && !osapi.NotFound(err) {
			errs = append(errs, fmt.Errorf("delete port %s: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// startAgain starts a server the job stopped and waits until it is ACTIVE. Nova
// refuses a start (409) while the server is still stopping or has a task; that is
// retried until the context ends.
func (r *Runner) startAgain(ctx context.Context, cc *gophercloud.ServiceClient, id string) error {
	err := r.wait(ctx, "start the source server "+id+" again", func() (string, error) {
		s, err := osapi.GetServer(ctx, cc, id)
		switch {
		case osapi.NotFound(err):
			return "ACTIVE", nil // nothing to start: an operator deleted it
		case err != nil:
			return "", err
		case s.Status == "SHUTOFF" && s.TaskState == "":
			if err := osapi.StartServer(ctx, cc, id); err != nil && !osapi.Conflict(err) {
				return "", err
			}
		}
		return s.Status, nil
	}, "ACTIVE", "ERROR")
	if err != nil {
		return fmt.Errorf("start the source server again: %w", err)
	}
	return nil
}

// deleteServer deletes a server and waits until Nova no longer has it; a server
// already gone is success.
func (r *Runner) deleteServer(ctx context.Context, cc *gophercloud.ServiceClient, id string) error {
	if err := osapi.DeleteServer(ctx, cc, id); err != nil {
		if osapi.NotFound(err) {
			return nil
		}
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return r.wait(ctx, "delete server "+id, func() (string, error) {
		_, err := osapi.GetServer(ctx, cc, id)
		if osapi.NotFound(err) {
			return "gone", nil
		}
		return "present", err
	}, "gone")
}

// Decommission deletes a succeeded job's source server and its snapshot image in
// the source Glance. Both are safe to repeat (already gone is success).
func (r *Runner) Decommission(ctx context.Context, j *converterv1.Job) (*converterv1.Decommission, error) {
	if IsP2V(j) {
		return nil, fmt.Errorf("%w: a physical server is switched off by its operator, not through the cloud", ErrNotDecommissionable)
	}
	src, err := r.open(ctx, j.GetSource().GetCloud())
	if err != nil {
		return nil, fmt.Errorf("source cloud %q: %w", j.GetSource().GetCloud(), err)
	}
	if err := r.deleteServer(ctx, src.compute, j.GetSource().GetServerId()); err != nil {
		return nil, err
	}
	snap := j.GetCreated().GetSnapshotImageId()
	if snap != "" {
		if err := imagecopy.NewGlance(src.image).Delete(ctx, snap); err != nil {
			return nil, fmt.Errorf("delete snapshot image %s: %w", snap, err)
		}
	}
	return &converterv1.Decommission{Time: timestamppb.Now(), SourceServerId: j.GetSource().GetServerId(), SnapshotImageId: snap}, nil
}
