package p2v

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// LVM sources are read without device-mapper and without activating anything: lvm2's
// own reporting commands (read-only, with a device filter that lets them see only
// this disk's physical volumes, and activation switched off) say where each logical
// volume's extents lie, and each volume is then a read-only loop device at that
// offset of the source — or, when its extents are not contiguous, a sparse copy of
// them in the work directory (the runs may lie on different disks of the server).
// The conversion host's own volume groups are never seen, so a source VG that has the same name as one of the host's (VolGroup00 on
// every CentOS box) does not collide with it, and nothing on the source is written.
// Linear volumes only: striped, mirrored, RAID, thin and cache volumes are refused.

// lvmConfig is the --config of every lvm2 command: only devs, no activation, no
// udev, no devices file, no metadata backups.
func lvmConfig(devs []string) string {
	var accept []string
	for _, d := range devs {
		accept = append(accept, fmt.Sprintf(`"a|^%s$|"`, d))
	}
	return `global{activation=0} devices{obtain_device_list_from_udev=0 use_devicesfile=0 filter=[` +
		strings.Join(accept, ",") + `,"r|.*|"]} activation{udev_sync=0 udev_rules=0} backup{backup=0 archive=0}`
}

// lvmReport runs an lvm2 reporting command (pvs, lvs) read-only on devs and returns
// its JSON report's rows.
func lvmReport(ctx context.Context, devs []string, cmd, kind, fields string) ([]map[string]string, error) {
	out, err := runEnv(ctx, []string{"LVM_SUPPRESS_FD_WARNINGS=1"}, cmd, "--readonly", "--config", lvmConfig(devs),
		"--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields)
	if err != nil {
		return nil, fmt.Errorf("%w (is lvm2 installed on the worker?)", err)
	}
	var r struct {
		Report []map[string][]map[string]string `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("%s report: %w", cmd, err)
	}
	var rows []map[string]string
	for _, rep := range r.Report {
		rows = append(rows, rep[kind]...)
	}
	return rows, nil
}

// lvSegment is one run of a logical volume's extents on a physical volume.
type lvSegment struct {
	LVStart int64 // first extent in the LV
	Count   int64 // extents
	PV      string
	PVStart int64 // first extent on the PV
}

// lvmVolumes finds the logical volumes on d's LVM physical volumes and appends each
// as a volume of d (a read-only block device of its own), pushing the clean-up onto u.
func lvmVolumes(ctx context.Context, u *undo, d *Disk, work string) error {
	pvPart := map[string]*Partition{}
	var devs []string
	for i := range d.Partitions {
		if p := &d.Partitions[i]; p.FSType == "LVM2_member" {
			pvPart[p.device] = p
			devs = append(devs, p.device)
		}
	}
	if len(devs) == 0 {
		return nil
	}
	lvs, peStart, err := readLVs(ctx, devs, pvPart)
	if err != nil {
		return err
	}
	for _, v := range lvs {
		if v.unsupported != "" {
			return fmt.Errorf("%w: logical volume %s is %s: only linear logical volumes are converted", ErrUnsupported, v.key(), v.unsupported)
		}
		pieces, err := v.pieces(pvPart, peStart)
		if err != nil {
			return err
		}
		dev, err := attachLV(ctx, u, work, v, pieces)
		if err != nil {
			return err
		}
		p := Partition{Number: pvPart[v.segs[0].PV].Number, Disk: pvPart[v.segs[0].PV].Disk, Volume: v.key(), Start: pieces[0].from, Size: v.size, Type: "lvm", device: dev}
		p.FSType, p.UUID, p.Label = blkid(ctx, dev)
		d.Partitions = append(d.Partitions, p)
	}
	return nil
}

// logicalVolume is one logical volume as lvm2's reports describe it.
type logicalVolume struct {
	vg, name    string
	size, ext   int64 // bytes, and the volume group's extent size
	segs        []lvSegment
	unsupported string // why it cannot be converted (a RAID or mirror segment), or ""
}

func (v *logicalVolume) key() string { return v.vg + "/" + v.name }

// lvPiece is where a run of a logical volume's bytes lies on a source disk.
type lvPiece struct {
	at, from, n int64  // offset in the volume, offset on the disk, length
	src         string // the loop device of the PV's disk
}

// readLVs reads the logical volumes on the physical volumes devs (with lvm2's
// reports, activation off), sorted by name, and each PV's first extent's offset.
func readLVs(ctx context.Context, devs []string, pvPart map[string]*Partition) ([]*logicalVolume, map[string]int64, error) {
	pvs, err := lvmReport(ctx, devs, "pvs", "pv", "pv_name,pe_start,vg_name")
	if err != nil {
		return nil, nil, err
	}
	peStart := map[string]int64{}
	for _, r := range pvs {
		v, _ := strconv.ParseInt(r["pe_start"], 10, 64)
		peStart[r["pv_name"]] = v
	}
	rows, err := lvmReport(ctx, devs, "lvs", "lv",
		"vg_name,lv_name,lv_size,vg_extent_size,segtype,stripes,seg_start_pe,seg_size_pe,seg_pe_ranges,vg_missing_pv_count")
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]*logicalVolume{}
	var names []string
	for _, r := range rows {
		key := r["vg_name"] + "/" + r["lv_name"]
		v := byName[key]
		if v == nil {
			v = &logicalVolume{vg: r["vg_name"], name: r["lv_name"]}
			v.size, _ = strconv.ParseInt(r["lv_size"], 10, 64)
			v.ext, _ = strconv.ParseInt(r["vg_extent_size"], 10, 64)
			byName[key] = v
			names = append(names, key)
		}
		if n, _ := strconv.Atoi(r["vg_missing_pv_count"]); n > 0 {
			return nil, nil, fmt.Errorf("%w: volume group %s has %d physical volume(s) that are not on the disks given: add the server's other disks (more_disk_paths)", ErrUnsupported, r["vg_name"], n)
		}
		if st := r["segtype"]; (st != "linear" && st != "striped") || r["stripes"] != "1" {
			v.unsupported = fmt.Sprintf("%s with %s stripe(s)", st, r["stripes"])
			continue
		}
		seg := lvSegment{}
		seg.LVStart, _ = strconv.ParseInt(r["seg_start_pe"], 10, 64)
		seg.Count, _ = strconv.ParseInt(r["seg_size_pe"], 10, 64)
		// seg_pe_ranges is "/dev/loop3p2:0-99" for a linear segment.
		rng := r["seg_pe_ranges"]
		i := strings.LastIndexByte(rng, ':')
		a, b, ok := strings.Cut(rng[i+1:], "-")
		if i < 0 || !ok {
			return nil, nil, fmt.Errorf("lvs: logical volume %s: unreadable extent range %q", key, rng)
		}
		seg.PV = rng[:i]
		seg.PVStart, _ = strconv.ParseInt(a, 10, 64)
		if end, _ := strconv.ParseInt(b, 10, 64); end-seg.PVStart+1 != seg.Count || pvPart[seg.PV] == nil {
			return nil, nil, fmt.Errorf("lvs: logical volume %s: extent range %q does not match its %d extents on this disk", key, rng, seg.Count)
		}
		v.segs = append(v.segs, seg)
	}
	sort.Strings(names)
	out := make([]*logicalVolume, 0, len(names))
	for _, k := range names {
		out = append(out, byName[k])
	}
	return out, peStart, nil
}

// pieces is where the volume's segments lie on the source disks, in the volume's
// order; segments adjacent on a disk are one piece. A gap is an error.
func (v *logicalVolume) pieces(pvPart map[string]*Partition, peStart map[string]int64) ([]lvPiece, error) {
	sort.Slice(v.segs, func(i, j int) bool { return v.segs[i].LVStart < v.segs[j].LVStart })
	var pieces []lvPiece
	var next int64
	for _, s := range v.segs {
		if s.LVStart != next {
			return nil, fmt.Errorf("lvs: logical volume %s: extents %d to %d are missing", v.key(), next, s.LVStart-1)
		}
		next = s.LVStart + s.Count
		from, src := pvPart[s.PV].Start+peStart[s.PV]+s.PVStart*v.ext, pvPart[s.PV].diskLoop
		if n := len(pieces); n > 0 && pieces[n-1].src == src && pieces[n-1].from+pieces[n-1].n == from {
			pieces[n-1].n += s.Count * v.ext // adjacent on the disk: one piece
			continue
		}
		pieces = append(pieces, lvPiece{at: s.LVStart * v.ext, from: from, n: s.Count * v.ext, src: src})
	}
	return pieces, nil
}

// attachLV makes the volume a read-only loop device: straight over the disk when
// it is one piece, else over a sparse copy of its pieces (an lvextend after
// another volume was made) in work. Both are undone by u.
func attachLV(ctx context.Context, u *undo, work string, v *logicalVolume, pieces []lvPiece) (string, error) {
	var out string
	var err error
	if len(pieces) == 1 {
		out, err = run(ctx, "losetup", "-f", "--show", "-r", "-o", strconv.FormatInt(pieces[0].from, 10),
			"--sizelimit", strconv.FormatInt(pieces[0].n, 10), pieces[0].src)
	} else {
		img := filepath.Join(work, "lv-"+v.vg+"-"+v.name+".img")
		if err := copyLV(ctx, img, v, pieces); err != nil {
			_ = os.Remove(img)
			return "", err
		}
		u.push(func() error { return os.Remove(img) })
		out, err = run(ctx, "losetup", "-f", "--show", "-r", img)
	}
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(out)
	u.push(func() error { return detach(dev) })
	if u.record != nil {
		u.record(dev)
	}
	return dev, nil
}

// copyLV writes the volume's pieces into a sparse image file of its size.
func copyLV(ctx context.Context, img string, v *logicalVolume, pieces []lvPiece) error {
	if err := os.MkdirAll(filepath.Dir(img), 0o700); err != nil {
		return err
	}
	dst, err := os.OpenFile(img, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := dst.Truncate(v.size); err != nil {
		return err
	}
	for _, p := range pieces {
		src, err := os.Open(p.src)
		if err != nil {
			return err
		}
		err = copySparse(ctx, dst, p.at, src, p.from, p.n)
		_ = src.Close()
		if err != nil {
			return fmt.Errorf("copy logical volume %s: %w", v.key(), err)
		}
	}
	return dst.Close()
}

// copySparse copies n bytes from src at from to dst at at, leaving runs of zeros
// as holes.
func copySparse(ctx context.Context, dst io.WriterAt, at int64, src io.ReaderAt, from, n int64) error {
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < n; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(int64(len(buf)), n-off)]
		if _, err := src.ReadAt(b, from+off); err != nil {
			return err
		}
		if bytes.Equal(b, zero[:len(b)]) {
			continue
		}
		if _, err := dst.WriteAt(b, at+off); err != nil {
			return err
		}
	}
	return nil
}

// mapperName is the /dev/mapper name of a logical volume: hyphens doubled.
func mapperName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}
