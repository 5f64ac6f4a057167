package p2v

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

func umountLazy(mp string) error {
	if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("umount %s: %w", mp, err)
	}
	return nil
}

// loopsFile lists, in a work directory, the loop devices made there.
const loopsFile = "loop-devices"

func recorder(work string) func(string) {
	return func(loop string) {
		f, err := os.OpenFile(filepath.Join(work, loopsFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return
		}
		defer f.Close()
		fmt.Fprintln(f, loop)
	}
}

// Sweep undoes what a conversion killed in mid-build (SIGKILL, a crash) left under
// root: it unmounts everything mounted below it (deepest first), detaches the loop
// devices recorded there (only if they are still backed by what was recorded), and
// removes the work directories. A worker runs it before it takes jobs.
func Sweep(ctx context.Context, root string) (unmounted, detached int, err error) {
	root, err = filepath.Abs(root)
	if err != nil {
		return 0, 0, err
	}
	m, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return 0, 0, err
	}
	var mps []string
	for _, line := range strings.Split(string(m), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], root+"/") {
			mps = append(mps, f[1])
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	var errs []error
	for _, mp := range mps {
		if err := umountLazy(mp); err != nil {
			errs = append(errs, err)
		} else {
			unmounted++
		}
	}
	lists, _ := filepath.Glob(filepath.Join(root, "*", "*", loopsFile))
	more, _ := filepath.Glob(filepath.Join(root, "*", loopsFile))
	for _, lf := range append(lists, more...) {
		b, _ := os.ReadFile(lf)
		for _, loop := range strings.Fields(string(b)) {
			if !strings.HasPrefix(loop, "/dev/loop") {
				continue
			}
			_, _ = run(ctx, "partx", "-d", loop)
			if _, err := run(ctx, "losetup", "-d", loop); err == nil {
				detached++
			}
		}
	}
	if ents, err := os.ReadDir(root); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				errs = append(errs, os.RemoveAll(filepath.Join(root, e.Name())))
			}
		}
	}
	return unmounted, detached, errors.Join(errs...)
}
