package devcloud

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// ComputeErrors returns why a server of the dev cloud failed to build, as its
// nova-compute logs say it: the distinct exception lines (at most five) logged for that
// instance by any of the dev cloud's computes. Nova's own fault says only "Exceeded
// maximum number of retries"; this is what a test prints next to it, so that a CI log
// names the cause. "" when the logs cannot be read or say nothing of the instance.
func ComputeErrors(serverID string) string {
	logs, _ := filepath.Glob(filepath.Join(filepath.Dir(CloudsYAML()), "log", "nova-compute-*.log"))
	tag := "[instance: " + serverID + "]"
	var found []string
	seen := map[string]bool{}
	for _, p := range logs {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
		for sc.Scan() && len(found) < 5 {
			line := sc.Text()
			i := strings.Index(line, tag)
			if i < 0 || !strings.Contains(line, " ERROR ") {
				continue
			}
			msg := strings.TrimSpace(line[i+len(tag):])
			// The exception's own line ("libvirt.libvirtError: ...", "nova.exception.X: ...")
			// names the cause; the traceback's frames do not.
			if c := strings.Index(msg, ": "); c < 0 || strings.ContainsAny(msg[:c], " \t") || !strings.Contains(msg[:c], "Error") && !strings.Contains(msg[:c], "Exception") {
				continue
			}
			if !seen[msg] {
				seen[msg] = true
				found = append(found, filepath.Base(p)+": "+msg)
			}
		}
		_ = f.Close()
	}
	return strings.Join(found, "\n")
}
