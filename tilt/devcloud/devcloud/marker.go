package devcloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
)

// MarkerMagic begins the 4 KiB block that the dev cloud's Nova driver
// (tilt/devcloud/dataplane/hikkoshi_devcloud_nova.py) appends to a raw disk when its
// server is first built: the server's ID and name, what the guest "wrote". Its
// snapshots carry it, and so do the disks of servers booted from them.
const MarkerMagic = "HIKKOSHI-DEVCLOUD-DISK"

// MarkerSize is the size of the marker block at the end of a disk.
const MarkerSize = 4096

// DiskMarker is what an image's bytes say about the server they were taken from.
type DiskMarker struct {
	Fields map[string]string // server_id, name, project_id, host
	Size   int64             // the image's size in bytes
	SHA256 string            // of the whole image
}

// ReadDiskMarker reads image id from Glance and returns the marker at its end; an
// image without one is an error that says so.
func ReadDiskMarker(ctx context.Context, ic *gophercloud.ServiceClient, id string) (*DiskMarker, error) {
	r, err := imagedata.Download(ctx, ic, id).Extract()
	if err != nil {
		return nil, fmt.Errorf("download image %s: %w", id, err)
	}
	defer r.Close()
	h := sha256.New()
	tail := make([]byte, 0, 2*MarkerSize)
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			n += int64(k)
			tail = append(tail, buf[:k]...)
			if len(tail) > MarkerSize {
				tail = append(tail[:0], tail[len(tail)-MarkerSize:]...)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("download image %s: %w", id, err)
		}
	}
	m := &DiskMarker{Fields: map[string]string{}, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if len(tail) < MarkerSize || !bytes.HasPrefix(tail, []byte(MarkerMagic)) {
		return m, fmt.Errorf("image %s (%d bytes) ends with no %s marker", id, n, MarkerMagic)
	}
	for _, line := range strings.Split(string(bytes.TrimRight(tail, "\x00")), "\n")[1:] {
		if k, v, ok := strings.Cut(line, "="); ok {
			m.Fields[k] = v
		}
	}
	return m, nil
}
