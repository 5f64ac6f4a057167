package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/hikkoshi/hikkoshi/platform/service"
)

// TestConfigRefusesWhatCannotRun: each flag lbaas cannot run with is named in the
// error; a cloud and the defaults pass.
func TestConfigRefusesWhatCannotRun(t *testing.T) {
	t.Setenv("OS_CLOUD", "")
	parse := func(args ...string) error {
		c := &config{Config: service.NewConfig("lbaas", DefaultPort)}
		fs := flag.NewFlagSet("lbaas", flag.ContinueOnError)
		c.register(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		return c.validate()
	}
	if err := parse("--cloud", "old"); err != nil {
		t.Fatalf("a cloud and the defaults: %v", err)
	}
	for flagName, args := range map[string][]string{
		"--cloud":       {},
		"--create-mode": {"--cloud", "old", "--create-mode", "parallel"},
		"--request-ttl": {"--cloud", "old", "--request-ttl", "5s"},
	} {
		if err := parse(args...); err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%v: %v, want an error naming %s", args, err, flagName)
		}
	}
}
