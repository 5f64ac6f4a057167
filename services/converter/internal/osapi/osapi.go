// Package osapi is every Nova, Neutron, Glance and Cinder call the converter's jobs make,
// one function per call (the way services/lbaas/octavia wraps Octavia): the steps
// read as what they do, and an answer that cannot be read is an error — a list is
// never taken for empty because its body could not be parsed.
package osapi

import (
	"context"
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumetypes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/attachinterfaces"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/availabilityzones"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/quotas"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// NotFound reports a 404.
func NotFound(err error) bool { return gophercloud.ResponseCodeIs(err, http.StatusNotFound) }

// Forbidden reports a 403 (a policy refusing the call).
func Forbidden(err error) bool { return gophercloud.ResponseCodeIs(err, http.StatusForbidden) }

// BadRequest reports a 400 (Cinder refusing an action on a busy volume).
func BadRequest(err error) bool { return gophercloud.ResponseCodeIs(err, http.StatusBadRequest) }

// Conflict reports a 409 (Nova refusing an action while a server is busy).
func Conflict(err error) bool { return gophercloud.ResponseCodeIs(err, http.StatusConflict) }

// listAll reads every page of a list and extracts it.
func listAll[T any](ctx context.Context, pager pagination.Pager, extract func(pagination.Page) ([]T, error)) ([]T, error) {
	pages, err := pager.AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return extract(pages)
}

// Nova.

// GetServer reads a server.
func GetServer(ctx context.Context, c *gophercloud.ServiceClient, id string) (*servers.Server, error) {
	return servers.Get(ctx, c, id).Extract()
}

// ListServers lists servers (Nova filters Name as a regular expression).
func ListServers(ctx context.Context, c *gophercloud.ServiceClient, opts servers.ListOpts) ([]servers.Server, error) {
	return listAll(ctx, servers.List(c, opts), servers.ExtractServers)
}

// CreateServer boots a server.
func CreateServer(ctx context.Context, c *gophercloud.ServiceClient, opts servers.CreateOptsBuilder) (*servers.Server, error) {
	return servers.Create(ctx, c, opts, nil).Extract()
}

// StopServer asks Nova to stop a server.
func StopServer(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return servers.Stop(ctx, c, id).ExtractErr()
}

// StartServer asks Nova to start a server.
func StartServer(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return servers.Start(ctx, c, id).ExtractErr()
}

// DeleteServer asks Nova to delete a server.
func DeleteServer(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return servers.Delete(ctx, c, id).ExtractErr()
}

// Snapshot asks Nova for a snapshot image of a server and returns the image's ID.
func Snapshot(ctx context.Context, c *gophercloud.ServiceClient, id string, opts servers.CreateImageOpts) (string, error) {
	return servers.CreateImage(ctx, c, id, opts).ExtractImageID()
}

// ListInterfaces lists a server's attached interfaces.
func ListInterfaces(ctx context.Context, c *gophercloud.ServiceClient, serverID string) ([]attachinterfaces.Interface, error) {
	return listAll(ctx, attachinterfaces.List(c, serverID), attachinterfaces.ExtractInterfaces)
}

// ListFlavors lists every flavor the project may use, public and private.
func ListFlavors(ctx context.Context, c *gophercloud.ServiceClient) ([]flavors.Flavor, error) {
	return listAll(ctx, flavors.ListDetail(c, flavors.ListOpts{AccessType: flavors.AllAccess}), flavors.ExtractFlavors)
}

// ListAvailabilityZones lists the compute availability zones the project may boot
// in (what `openstack availability zone list --compute` shows).
func ListAvailabilityZones(ctx context.Context, c *gophercloud.ServiceClient) ([]availabilityzones.AvailabilityZone, error) {
	return listAll(ctx, availabilityzones.List(c), availabilityzones.ExtractAvailabilityZones)
}

// GetKeyPair reads a key pair of the caller.
func GetKeyPair(ctx context.Context, c *gophercloud.ServiceClient, name string) (*keypairs.KeyPair, error) {
	return keypairs.Get(ctx, c, name, nil).Extract()
}

// ComputeLimits reads the project's absolute Nova limits and usage.
func ComputeLimits(ctx context.Context, c *gophercloud.ServiceClient) (*limits.Limits, error) {
	return limits.Get(ctx, c, limits.GetOpts{}).Extract()
}

// Neutron.

// GetNetwork reads a network.
func GetNetwork(ctx context.Context, c *gophercloud.ServiceClient, id string) (*networks.Network, error) {
	return networks.Get(ctx, c, id).Extract()
}

// GetPort reads a port.
func GetPort(ctx context.Context, c *gophercloud.ServiceClient, id string) (*ports.Port, error) {
	return ports.Get(ctx, c, id).Extract()
}

// ListPorts lists ports.
func ListPorts(ctx context.Context, c *gophercloud.ServiceClient, opts ports.ListOpts) ([]ports.Port, error) {
	return listAll(ctx, ports.List(c, opts), ports.ExtractPorts)
}

// CreatePort makes a port.
func CreatePort(ctx context.Context, c *gophercloud.ServiceClient, opts ports.CreateOptsBuilder) (*ports.Port, error) {
	return ports.Create(ctx, c, opts).Extract()
}

// DeletePort deletes a port.
func DeletePort(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return ports.Delete(ctx, c, id).ExtractErr()
}

// ListSecurityGroups lists security groups.
func ListSecurityGroups(ctx context.Context, c *gophercloud.ServiceClient, opts groups.ListOpts) ([]groups.SecGroup, error) {
	return listAll(ctx, groups.List(c, opts), groups.ExtractGroups)
}

// NetworkQuota reads a project's Neutron quota with its usage.
func NetworkQuota(ctx context.Context, c *gophercloud.ServiceClient, project string) (*quotas.QuotaDetailSet, error) {
	return quotas.GetDetail(ctx, c, project).Extract()
}

// Glance.

// GetImage reads an image.
func GetImage(ctx context.Context, c *gophercloud.ServiceClient, id string) (*images.Image, error) {
	return images.Get(ctx, c, id).Extract()
}

// ListImages lists images.
func ListImages(ctx context.Context, c *gophercloud.ServiceClient, opts images.ListOpts) ([]images.Image, error) {
	return listAll(ctx, images.List(c, opts), images.ExtractImages)
}

// ListVolumeAttachments lists a server's volume attachments (Nova's view: volume and
// device).
func ListVolumeAttachments(ctx context.Context, c *gophercloud.ServiceClient, serverID string) ([]volumeattach.VolumeAttachment, error) {
	return listAll(ctx, volumeattach.List(c, serverID), volumeattach.ExtractVolumeAttachments)
}

// Cinder.

// GetVolume reads a volume.
func GetVolume(ctx context.Context, c *gophercloud.ServiceClient, id string) (*volumes.Volume, error) {
	return volumes.Get(ctx, c, id).Extract()
}

// ListVolumes lists volumes.
func ListVolumes(ctx context.Context, c *gophercloud.ServiceClient, opts volumes.ListOpts) ([]volumes.Volume, error) {
	return listAll(ctx, volumes.List(c, opts), volumes.ExtractVolumes)
}

// CreateVolume makes a volume (blank, from a snapshot or from an image).
func CreateVolume(ctx context.Context, c *gophercloud.ServiceClient, opts volumes.CreateOpts) (*volumes.Volume, error) {
	return volumes.Create(ctx, c, opts, nil).Extract()
}

// DeleteVolume asks Cinder to delete a volume.
func DeleteVolume(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return volumes.Delete(ctx, c, id, volumes.DeleteOpts{}).ExtractErr()
}

// UploadVolume asks Cinder to upload a volume's bytes to a new image in its Glance
// and returns the image's ID.
func UploadVolume(ctx context.Context, c *gophercloud.ServiceClient, id string, opts volumes.UploadImageOpts) (string, error) {
	img, err := volumes.UploadImage(ctx, c, id, opts).Extract()
	if err != nil {
		return "", err
	}
	return img.ImageID, nil
}

// CreateSnapshot takes a snapshot of a volume.
func CreateSnapshot(ctx context.Context, c *gophercloud.ServiceClient, opts snapshots.CreateOpts) (*snapshots.Snapshot, error) {
	return snapshots.Create(ctx, c, opts).Extract()
}

// GetSnapshot reads a volume snapshot.
func GetSnapshot(ctx context.Context, c *gophercloud.ServiceClient, id string) (*snapshots.Snapshot, error) {
	return snapshots.Get(ctx, c, id).Extract()
}

// ListSnapshots lists volume snapshots.
func ListSnapshots(ctx context.Context, c *gophercloud.ServiceClient, opts snapshots.ListOpts) ([]snapshots.Snapshot, error) {
	return listAll(ctx, snapshots.List(c, opts), snapshots.ExtractSnapshots)
}

// DeleteSnapshot asks Cinder to delete a volume snapshot.
func DeleteSnapshot(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
	return snapshots.Delete(ctx, c, id).ExtractErr()
}

// ListVolumeTypes lists the volume types the project may use.
func ListVolumeTypes(ctx context.Context, c *gophercloud.ServiceClient) ([]volumetypes.VolumeType, error) {
	return listAll(ctx, volumetypes.List(c, volumetypes.ListOpts{}), volumetypes.ExtractVolumeTypes)
}

// VolumeQuota reads a project's Cinder quota with its usage.
func VolumeQuota(ctx context.Context, c *gophercloud.ServiceClient, project string) (*quotasets.QuotaUsageSet, error) {
	q, err := quotasets.GetUsage(ctx, c, project).Extract()
	if err != nil {
		return nil, err
	}
	return &q, nil
}
