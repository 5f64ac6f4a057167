package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/hikkoshi/hikkoshi/platform/service"
)

// TestConfigRefusesWhatCannotRun: each flag netbridge cannot run with is named in
// the error; the defaults pass.
func TestConfigRefusesWhatCannotRun(t *testing.T) {
	parse := func(args ...string) (*config, error) {
		c := &config{Config: service.NewConfig("netbridge", DefaultPort)}
		fs := flag.NewFlagSet("netbridge", flag.ContinueOnError)
		c.register(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return c, c.validate()
	}
	if c, err := parse("--watch-clouds", "old-admin, new-admin"); err != nil || len(c.clouds) != 2 {
		t.Fatalf("defaults: %v %v", c, err)
	}
	for flagName, args := range map[string][]string{
		"--watch-interval": {"--watch-interval", "10ms"},
		"--heal-max":       {"--heal-max", "0"},
		"--heal-backoff":   {"--heal-backoff", "1m", "--heal-max-backoff", "1s"},
	} {
		if _, err := parse(args...); err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%v: %v, want an error naming %s", args, err, flagName)
		}
	}
}
