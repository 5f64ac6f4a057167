package p2v

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The guest's own programs (update-initramfs, dracut, its package manager) run in
// a sandbox, not in a plain chroot with the worker's /dev, /proc and /sys bound: a
// crafted disk's binaries run as root, and must not reach the worker's disks, its
// processes or its credentials.
//
// The sandbox is made of new mount, PID, IPC and UTS namespaces (and a new, empty
// network namespace unless the command fetches packages) by unshare(1). Inside, the
// tree gets its own /dev — a tmpfs holding only null, zero, full, random, urandom,
// tty and a private devpts (no block device of the worker) —, a /proc of the new PID
// namespace (the worker's processes, their environments and command lines are not
// there) and a read-only /sys. Then capsh(1) chroots into the tree and drops every
// capability from the bounding set but those a package manager needs to own and
// write files (chown, dac_override, fowner, fsetid, kill, setgid, setuid): no
// mount, mknod, chroot, raw I/O, module loading, ptrace or network administration
// — a root process cannot climb out of the chroot without CAP_SYS_CHROOT nor make a
// device node of a worker's disk without CAP_MKNOD. Every mount is in the sandbox's
// own namespace and is gone when it ends. Measured on the fixture's conversion:
// the initramfs step takes the same ~4 s as in a plain chroot (unshare and capsh
// add a few milliseconds); a qemu appliance, as libguestfs runs, would add its
// boot (tens of seconds under TCG) to every conversion.

// keptCaps are the capabilities a guest command keeps (by number: CAP_CHOWN,
// CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID).
var keptCaps = map[int]bool{0: true, 1: true, 3: true, 4: true, 5: true, 6: true, 7: true}

// droppedCaps lists every other capability this kernel knows, for capsh --drop.
func droppedCaps() string {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	var out []string
	for c := 0; c <= last; c++ {
		if !keptCaps[c] {
			out = append(out, strconv.Itoa(c))
		}
	}
	return strings.Join(out, ",")
}

// sandboxScript runs inside unshare's namespaces: $1 is the tree, $2 the
// capabilities to drop, the rest the command.
const sandboxScript = `set -e
nt=$1; drop=$2; shift 2
mount -t tmpfs -o nosuid,mode=0755,size=16m hikkoshi-dev "$nt/dev"
mknod -m 0666 "$nt/dev/null" c 1 3; mknod -m 0666 "$nt/dev/zero" c 1 5; mknod -m 0666 "$nt/dev/full" c 1 7
mknod -m 0666 "$nt/dev/random" c 1 8; mknod -m 0666 "$nt/dev/urandom" c 1 9; mknod -m 0666 "$nt/dev/tty" c 5 0
mkdir -m 0755 "$nt/dev/pts"; mkdir -m 1777 "$nt/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$nt/dev/pts"
ln -s pts/ptmx "$nt/dev/ptmx"; ln -s /proc/self/fd "$nt/dev/fd"
mount -t proc -o nosuid,nodev,noexec proc "$nt/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$nt/sys"
exec capsh --chroot="$nt" --drop="$drop" -- -c 'exec "$@"' hikkoshi-guest "$@"
`

// guestCommand is the command that runs args (a program of the guest, by its path
// in the tree, and its arguments) in the sandbox of tree nt, with env as its whole
// environment; network gives it the worker's network (a package download).
func guestCommand(ctx context.Context, nt string, network bool, env []string, args ...string) (*exec.Cmd, error) {
	for _, d := range []string{"dev", "proc", "sys"} {
		// Mount points the guest cannot have turned into links out of its tree.
		if _, err := safeDir(nt, d); err != nil {
			return nil, err
		}
	}
	ns := []string{"--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--ipc", "--uts"}
	if !network {
		ns = append(ns, "--net")
	}
	full := append(append(ns, "--", "sh", "-c", sandboxScript, "hikkoshi-sandbox", nt, droppedCaps()), args...)
	cmd := exec.CommandContext(ctx, "unshare", full...)
	cmd.Env = env
	return cmd, nil
}

// guestEnv is the environment of a guest command.
var guestEnv = []string{"DEBIAN_FRONTEND=noninteractive", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}

// runGuest runs args in the sandbox of tree nt and returns an error with the tail
// of its output when it fails.
func runGuest(ctx context.Context, nt string, network bool, args ...string) error {
	cmd, err := guestCommand(ctx, nt, network, guestEnv, args...)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("in the guest (sandboxed) %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(tail))
	}
	return nil
}
