package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/hikkoshi/hikkoshi/platform/service"
)

// TestConfigRefusesWhatCannotRun: each flag the converter cannot run with is named
// in the error; the defaults pass.
func TestConfigRefusesWhatCannotRun(t *testing.T) {
	parse := func(args ...string) error {
		c := &config{Config: service.NewConfig("converter", DefaultPort)}
		fs := flag.NewFlagSet("converter", flag.ContinueOnError)
		c.register(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return c.validate()
	}
	if err := parse(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for flagName, args := range map[string][]string{
		"--chunk-bytes":       {"--chunk-bytes", "1000"},
		"--workers":           {"--workers", "-1"},
		"--cloud-jobs":        {"--cloud-jobs", "old=zero"},
		"--p2v-agent-network": {"--p2v-agent-network", "not-a-network"},
		"--p2v-disk-root":     {"--p2v-disk-root", "relative/dir"},
		"--probe-proxy":       {"--probe-proxy", "http://nope"},
	} {
		err := parse(args...)
		if err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%v: %v, want an error naming %s", args, err, flagName)
		}
	}
}
