#!/usr/bin/env bash
# fixture.sh builds the "physical server" disk that the P2V tests convert: Debian
# bookworm as an old box would have it — /boot, / and /var on separate MBR
# partitions, fstab by UUID, an initramfs with SATA/IDE drivers only (no virtio),
# the console on tty0 only, a static NIC configuration (ifupdown), grub-pc, no cloud-init —
# booting from GRUB in the MBR. It is assembled without loop devices or mounts
# (mkfs.ext4 -d per partition, grub-mkimage and dd), as ../shared/p2v-notes.md
# measured (~3.5 min, most of it debootstrap).
#
# From the same tree it builds three more disks, and a server of two disks
# (OUT with -multi-a and -multi-b before .raw: /boot and / on the first, /var on the
# second, which its fstab names /dev/sdb1). A UEFI one, OUT with -uefi before
# .raw: GPT, an EFI system partition (FAT, made with mkfs.vfat -C and mtools, no
# mounts) holding the vendor's GRUB at EFI/debian and the fallback EFI/BOOT/BOOTX64.EFI,
# and one root with /boot and /var in it. And a second disk, OUT with -lvm before .raw, as a
# CentOS-style installer lays one out: /boot on a partition, everything else on LVM
# (volume group vg-legacy — a hyphen, so /dev/mapper doubles it — with root, var in
# two runs of extents, as an lvextend after another volume leaves it, and swap;
# OUT-lvm.raw.var.sha256 sums every file of its /var), fstab
# by /dev/mapper and /dev/VG/LV paths, and a resume device in the initramfs config.
# The kernel here has no device-mapper: lvm2 runs with activation off and writes only
# metadata; the file systems go in at the extents `lvs` reports.
#
#   tilt/p2v/fixture.sh [OUT]    # default ~/.cache/hikkoshi/p2v/fixture-<hash>.raw
#
# It prints the image's path. The result is cached under a name carrying this
# script's hash: a changed script builds a new one. Needs root (debootstrap).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${HIKKOSHI_CACHE:-$HOME/.cache/hikkoshi}/p2v
hash=$(sha256sum "$here/fixture.sh" | cut -c1-12)
out=${1:-$cache/fixture-$hash.raw}
mkdir -p "$(dirname "$out")"
# One build at a time per machine: tests in parallel packages may all ask for it.
exec 9>"$out.lock"
flock 9
lvmout=${out%.raw}-lvm.raw
uefiout=${out%.raw}-uefi.raw
multia=${out%.raw}-multi-a.raw multib=${out%.raw}-multi-b.raw
if [[ -s "$out" && -s "$out.json" && -s "$lvmout" && -s "$lvmout.json" && -s "$uefiout" && -s "$uefiout.json" && -s "$multia" && -s "$multib" ]]; then
  echo "$out"
  exit 0
fi
log() { printf '[p2v-fixture %s] %s\n' "$(date +%T)" "$*" >&2; }

need=()
for t in capsh:libcap2-bin unshare:util-linux debootstrap:debootstrap pvcreate:lvm2 mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk mkfs.ext4:e2fsprogs grub-mkimage:grub2-common qemu-img:qemu-utils qemu-system-x86_64:qemu-system-x86; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[[ -d /usr/lib/grub/i386-pc ]] || need+=(grub-pc-bin)
[[ -d /usr/lib/grub/x86_64-efi ]] || need+=(grub-efi-amd64-bin)
[[ -f /usr/share/ovmf/OVMF.fd ]] || need+=(ovmf) # the tests boot the UEFI disk's conversion with it
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/p2v-fixture.XXXXXX")
loop=""
# A debootstrap killed mid-way leaves its /proc mounted in the tree.
trap '[[ -z "$loop" ]] || losetup -d "$loop"; awk -v w="$work/" '"'"'index($2, w) == 1 { print $2 }'"'"' /proc/mounts | sort -r | xargs -r umount -l; rm -rf "$work"' EXIT
tree=$work/tree
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log "debootstrap bookworm (minbase + kernel, grub, ifupdown, ssh) from $mirror"
DEBIAN_FRONTEND=noninteractive debootstrap --variant=minbase \
  --include=linux-image-amd64,grub-pc,systemd-sysv,udev,kmod,initramfs-tools,e2fsprogs,lvm2,ifupdown,iproute2,isc-dhcp-client,openssh-server,passwd,login,sudo \
  bookworm "$tree" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

uuid_boot=$(cat /proc/sys/kernel/random/uuid)
uuid_root=$(cat /proc/sys/kernel/random/uuid)
uuid_var=$(cat /proc/sys/kernel/random/uuid)
kver=$(basename "$(ls -d "$tree"/lib/modules/* | head -1)")
log "kernel $kver; configuring the tree as an old physical server"
echo pg-legacy-1 >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpg-legacy-1\n' >"$tree/etc/hosts"
cat >"$tree/etc/fstab" <<FSTAB
# /etc/fstab of pg-legacy-1 (three partitions, by UUID)
UUID=$uuid_root  /      ext4  errors=remount-ro  0  1
UUID=$uuid_boot  /boot  ext4  defaults           0  2
UUID=$uuid_var   /var   ext4  defaults           0  2
proc             /proc  proc  defaults           0  0
FSTAB
cat >"$tree/etc/network/interfaces" <<'NET'
# The server's own static address (the converter must keep it).
auto lo
iface lo inet loopback

auto eno1
iface eno1 inet static
    address 10.101.0.55/24
    gateway 10.101.0.1
    dns-nameservers 10.101.0.2
NET
# An initramfs that knows only SATA/IDE disks, as a box built for its hardware has.
sed -i 's/^MODULES=.*/MODULES=list/' "$tree/etc/initramfs-tools/initramfs.conf"
printf 'ata_piix\nahci\nsd_mod\next4\n' >>"$tree/etc/initramfs-tools/modules"
echo 'root:hikkoshi' | chroot "$tree" chpasswd
chroot "$tree" update-initramfs -u -k "$kver" >"$work/initramfs.log" 2>&1 || { tail -20 "$work/initramfs.log" >&2; exit 1; }
# GRUB's configuration, by hand (grub-mkconfig here would see the build host's disks).
mkdir -p "$tree/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$tree/boot/grub/i386-pc/"
cat >"$tree/boot/grub/grub.cfg" <<GRUB
set timeout=1
search --no-floppy --fs-uuid --set=root $uuid_boot
menuentry 'Debian GNU/Linux (pg-legacy-1)' {
  linux /vmlinuz-$kver root=UUID=$uuid_root ro console=tty0
  initrd /initrd.img-$kver
}
GRUB
# The box's own identity, which a move must keep: its SSH host keys (made when
# openssh-server was installed), an administrator's key in root's authorized_keys,
# and a user of its own with a key and a password.
[[ -e "$tree/etc/ssh/ssh_host_ed25519_key.pub" ]] || chroot "$tree" ssh-keygen -A
for who in admin@jumphost ops@laptop; do
  chroot "$tree" ssh-keygen -q -t ed25519 -N '' -C "$who" -f "/tmp/$who"
done
install -d -m 700 "$tree/root/.ssh"
install -m 600 "$tree/tmp/admin@jumphost.pub" "$tree/root/.ssh/authorized_keys"
chroot "$tree" useradd -m -u 1000 -s /bin/bash -c 'Operations' ops
echo 'ops:ops-password' | chroot "$tree" chpasswd
install -d -m 700 -o 1000 -g 1000 "$tree/home/ops/.ssh"
install -m 600 -o 1000 -g 1000 "$tree/tmp/ops@laptop.pub" "$tree/home/ops/.ssh/authorized_keys"
rm -f "$tree"/tmp/*@*
chroot "$tree" apt-get clean

log "splitting /boot and /var off the root tree"
mkdir -p "$work/boot" "$work/var"
(shopt -s dotglob; mv "$tree"/boot/* "$work/boot/"; mv "$tree"/var/* "$work/var/")

# Layout (MiB): 1 MiB gap for GRUB's core.img, /boot 256, / 2048, /var 768: 3 GiB.
img=$work/disk.raw
truncate -s 3076M "$img"
sfdisk -q "$img" <<'PARTS'
label: dos
start=2048, size=524288, type=83, bootable
start=526336, size=4194304, type=83
start=4720640, size=1572864, type=83
PARTS
mk() { # mk DIR UUID START_SECTOR SECTORS LABEL
  mkfs.ext4 -q -F -U "$2" -L "$5" -E offset=$(($3 * 512)) -d "$1" "$img" $(($4 / 2))k
}
log "mkfs.ext4 -d for /boot, / and /var (no mounts)"
mk "$work/boot" "$uuid_boot" 2048 524288 boot
mk "$tree" "$uuid_root" 526336 4194304 root
mk "$work/var" "$uuid_var" 4720640 1572864 var
log "GRUB into the MBR (boot.img) and the gap (core.img)"
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/grub' biosdisk part_msdos ext2 search_fs_uuid search normal linux
dd if=/usr/lib/grub/i386-pc/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
mv "$img" "$out"
cat >"$out.json" <<JSON
{"kernel": "$kver", "hostname": "pg-legacy-1", "uuid_boot": "$uuid_boot", "uuid_root": "$uuid_root", "uuid_var": "$uuid_var",
 "nic": "eno1", "address": "10.101.0.55/24"}
JSON
log "done: $out ($(du -h "$out" | cut -f1) used of $(du -h --apparent-size "$out" | cut -f1))"

# ---- the LVM disk: /boot (msdos1) + a physical volume (msdos2, type 8e)
log "LVM disk: /boot + vg-legacy (root, var in two runs, swap)"
cat >"$tree/etc/fstab" <<FSTAB
# /etc/fstab of pg-legacy-1 (LVM, as the installer made it)
/dev/mapper/vg--legacy-root  /      ext4  errors=remount-ro  0  1
UUID=$uuid_boot              /boot  ext4  defaults           0  2
/dev/vg-legacy/var           /var   ext4  defaults           0  2
/dev/mapper/vg--legacy-swap  none   swap  sw                 0  0
proc                         /proc  proc  defaults           0  0
FSTAB
echo 'RESUME=/dev/mapper/vg--legacy-swap' >"$tree/etc/initramfs-tools/conf.d/resume"
sed -i "s|root=UUID=$uuid_root|root=/dev/mapper/vg--legacy-root|" "$work/boot/grub/grub.cfg"
# Layout (MiB): 1 gap, /boot 256, the PV 3000: 3257 MiB.
img=$work/lvm.raw
truncate -s 3260M "$img"
sfdisk -q "$img" <<'PARTS'
label: dos
start=2048, size=524288, type=83, bootable
start=526336, size=6144000, type=8e
PARTS
pv_off=$((526336 * 512))
loop=$(losetup -f --show -o "$pv_off" --sizelimit $((6144000 * 512)) "$img")
cfg='global{activation=0} devices{obtain_device_list_from_udev=0 use_devicesfile=0 filter=["a|^'$loop'$|","r|.*|"]} activation{udev_sync=0 udev_rules=0} backup{backup=0 archive=0}'
lv() { local o; o=$(LVM_SUPPRESS_FD_WARNINGS=1 "$@" --config "$cfg" 2>&1) || { echo "$o" >&2; exit 1; }; }
lv pvcreate -q "$loop"
lv vgcreate -q vg-legacy "$loop"
lv lvcreate -q -an -Zn -y -n root -L 2048M vg-legacy
# var: 16 MiB, then swap, then var grown by 752 MiB — most of its file system (the
# journal, the data) lies in the second run.
lv lvcreate -q -an -Zn -y -n var -L 16M vg-legacy
lv lvcreate -q -an -Zn -y -n swap -L 128M vg-legacy
lv lvextend -q -L +752M vg-legacy/var
rep() { LVM_SUPPRESS_FD_WARNINGS=1 "$@" --config "$cfg" --readonly --noheadings --units b --nosuffix 2>/dev/null; }
pe_start=$(rep pvs -o pe_start "$loop" | tr -d ' ')
ext=$(rep vgs -o vg_extent_size vg-legacy | tr -d ' ')
segs=$(rep lvs -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges vg-legacy)
losetup -d "$loop"
loop=""
[[ -n "$pe_start" && -n "$ext" && $(grep -c . <<<"$segs") -eq 4 ]] || { echo "lvm2 did not report the volumes: $segs" >&2; exit 1; }
uuid_lvroot=$(cat /proc/sys/kernel/random/uuid)
uuid_lvvar=$(cat /proc/sys/kernel/random/uuid)
mkfs.ext4 -q -F -U "$uuid_lvroot" -L root -d "$tree" "$work/lv-root" 2048M >&2
mkfs.ext4 -q -F -U "$uuid_lvvar" -L var -d "$work/var" "$work/lv-var" 768M >&2
truncate -s 128M "$work/lv-swap" && mkswap -q "$work/lv-swap"
# Each run of extents of each volume, where lvm2 put it (MiB: extents are 4 MiB, the
# data area starts 1 MiB into the PV).
m=$((1024 * 1024))
while read -r name lvstart count ranges; do
  first=${ranges##*:}
  first=${first%-*}
  dd if="$work/lv-$name" of="$img" bs=1M conv=notrunc,sparse status=none \
    skip=$((lvstart * ext / m)) seek=$(((pv_off + pe_start + first * ext) / m)) count=$((count * ext / m))
done <<<"$segs"
mk "$work/boot" "$uuid_boot" 2048 524288 boot
dd if=/usr/lib/grub/i386-pc/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
# What /var holds, file by file, summed from the tree: a test reads it back through
# the converter's LVM reading and compares.
(cd "$work/var" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$lvmout.var.sha256"
mv "$img" "$lvmout"
cat >"$lvmout.json" <<JSON
{"kernel": "$kver", "hostname": "pg-legacy-1", "uuid_boot": "$uuid_boot", "uuid_root": "$uuid_lvroot", "uuid_var": "$uuid_lvvar",
 "vg": "vg-legacy", "nic": "eno1", "address": "10.101.0.55/24"}
JSON
log "done: $lvmout ($(du -h "$lvmout" | cut -f1) used of $(du -h --apparent-size "$lvmout" | cut -f1))"

# ---- the UEFI disk: GPT, an EFI system partition, one root holding /boot and /var
log "UEFI disk: GPT, EFI system partition (FAT32) + root"
(shopt -s dotglob; mv "$work/boot"/* "$tree/boot/"; mv "$work/var"/* "$tree/var/")
rm -f "$tree/etc/initramfs-tools/conf.d/resume"
uuid_uroot=$(cat /proc/sys/kernel/random/uuid)
vol=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
uuid_esp=${vol:0:4}-${vol:4:4}
mkdir -p "$tree/boot/efi"
cat >"$tree/etc/fstab" <<FSTAB
# /etc/fstab of pg-legacy-1 (UEFI)
UUID=$uuid_uroot  /          ext4  errors=remount-ro  0  1
UUID=$uuid_esp         /boot/efi  vfat  umask=0077         0  1
proc              /proc      proc  defaults           0  0
FSTAB
cat >"$tree/boot/grub/grub.cfg" <<GRUB
set timeout=1
search --no-floppy --fs-uuid --set=root $uuid_uroot
menuentry 'Debian GNU/Linux (pg-legacy-1, UEFI)' {
  linux /boot/vmlinuz-$kver root=UUID=$uuid_uroot ro console=tty0
  initrd /boot/initrd.img-$kver
}
GRUB
mkdir -p "$tree/boot/grub/x86_64-efi"
cp /usr/lib/grub/x86_64-efi/*.mod /usr/lib/grub/x86_64-efi/*.lst "$tree/boot/grub/x86_64-efi/"
printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n' "$uuid_uroot" >"$work/stub.cfg"
grub-mkimage -O x86_64-efi -o "$work/grubx64.efi" -c "$work/stub.cfg" -p /boot/grub \
  part_gpt fat ext2 search search_fs_uuid normal linux configfile echo
esp=$work/esp.img
mkfs.vfat -C -F 32 -n EFI -i "$vol" "$esp" $((128 * 1024)) >&2
mmd -i "$esp" ::/EFI ::/EFI/debian ::/EFI/BOOT
mcopy -i "$esp" "$work/grubx64.efi" ::/EFI/debian/grubx64.efi
mcopy -i "$esp" "$work/stub.cfg" ::/EFI/debian/grub.cfg
mcopy -i "$esp" "$work/grubx64.efi" ::/EFI/BOOT/BOOTX64.EFI
# Layout (MiB): 1 gap, the ESP 128, the root 3070, 1 for GPT's backup: 3200 MiB.
img=$work/uefi.raw
truncate -s 3200M "$img"
sfdisk -q "$img" <<'PARTS'
label: gpt
start=2048, size=262144, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=EFI
start=264192, size=6287360, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
PARTS
dd if="$esp" of="$img" bs=1M seek=1 conv=notrunc status=none
mk "$tree" "$uuid_uroot" 264192 6287360 root
mv "$img" "$uefiout"
cat >"$uefiout.json" <<JSON
{"kernel": "$kver", "hostname": "pg-legacy-1", "uuid_root": "$uuid_uroot", "uuid_esp": "$uuid_esp", "firmware": "uefi",
 "nic": "eno1", "address": "10.101.0.55/24"}
JSON
log "done: $uefiout ($(du -h "$uefiout" | cut -f1) used of $(du -h --apparent-size "$uefiout" | cut -f1))"

# ---- a server of two disks: /boot and / on sda, /var on sdb (by kernel name)
log "two disks: /boot + / on the first, /var on the second (/dev/sdb1)"
mkdir -p "$work/boot" "$work/var"
(shopt -s dotglob; mv "$tree"/boot/* "$work/boot/"; mv "$tree"/var/* "$work/var/")
rm -rf "$work/boot/efi"
uuid_mroot=$(cat /proc/sys/kernel/random/uuid)
uuid_mvar=$(cat /proc/sys/kernel/random/uuid)
cat >"$tree/etc/fstab" <<FSTAB
# /etc/fstab of pg-legacy-1 (two disks)
UUID=$uuid_mroot  /      ext4  errors=remount-ro  0  1
UUID=$uuid_boot   /boot  ext4  defaults           0  2
/dev/sdb1         /var   ext4  defaults           0  2
proc              /proc  proc  defaults           0  0
FSTAB
img=$work/multi-a.raw
truncate -s 2310M "$img"
sfdisk -q "$img" <<'PARTS'
label: dos
start=2048, size=524288, type=83, bootable
start=526336, size=4194304, type=83
PARTS
mk "$work/boot" "$uuid_boot" 2048 524288 boot
mk "$tree" "$uuid_mroot" 526336 4194304 root
dd if=/usr/lib/grub/i386-pc/boot.img of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$img" bs=512 seek=1 conv=notrunc status=none
img=$work/multi-b.raw
truncate -s 770M "$img"
sfdisk -q "$img" <<'PARTS'
label: dos
start=2048, size=1572864, type=83
PARTS
mk "$work/var" "$uuid_mvar" 2048 1572864 var
mv "$work/multi-a.raw" "$multia"
mv "$work/multi-b.raw" "$multib"
log "done: $multia, $multib"
echo "$out"
