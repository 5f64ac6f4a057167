// Package console drives the inventory's web console in headless Chromium (Debian's
// package), with the real services behind it: what the services do while the page
// is open appears on it without a reload.
package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

var bins map[string]string

func TestMain(m *testing.M) {
	var cleanup func()
	bins, cleanup = servicetest.MustBuildAll(map[string]string{
		"inventory": "github.com/hikkoshi/hikkoshi/services/inventory/cmd/inventory",
		"converter": "github.com/hikkoshi/hikkoshi/services/converter/cmd/converter",
		"netbridge": "github.com/hikkoshi/hikkoshi/services/netbridge/cmd/netbridge",
		"lbaas":     "github.com/hikkoshi/hikkoshi/services/lbaas/cmd/lbaas",
	})
	code := m.Run()
	cleanup()
	os.Exit(code)
}

const chromium = "/usr/bin/chromium"

// browser is a headless Chromium of the test's own, with the flags that keep it
// off the network (it reaches only the console on loopback).
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v (scripts/browser.sh installs Debian's chromium)", chromium, err)
		}
		t.Skipf("NO CHROMIUM: %v (scripts/browser.sh installs Debian's chromium)", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-default-apps", true),
	}
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	return ctx
}

// TestConsoleFollowsAJobLive: the console opened in headless Chromium shows the
// services registered in etcd; a workload and conversion jobs created while the
// page is open appear, and each job's state and step change on the page as the
// worker moves it (the server-sent events of the Watch streams) — the same page
// load throughout. A screenshot is saved ($HIKKOSHI_CONSOLE_SCREENSHOT, else the
// test's temporary directory).
func TestConsoleFollowsAJobLive(t *testing.T) {
	ctx := browser(t)
	env := servicetest.NewEnv(t)
	cy := devcloud.CloudsYAML()
	port := servicetest.FreePort(t)
	inv := env.Start(t, bins["inventory"], "inventory", "--console-listen", fmt.Sprintf("127.0.0.1:%d", port))
	cv := env.Start(t, bins["converter"], "converter", "--clouds-yaml", cy, "--poll", "250ms", "--workers", "1",
		"--clouds", "old,new", "--p2v-disk-root", p2vtest.CacheDir(), "--p2v-agent-network", "127.0.0.1")
	env.Start(t, bins["netbridge"], "netbridge", "--clouds-yaml", cy)
	env.Start(t, bins["lbaas"], "lbaas", "--cloud", "old", "--clouds-yaml", cy, "--owner-tag", "ctest-console")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(`#status.live`)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	loadID, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.hikkoshi.loadId`))
	if err != nil {
		t.Fatal(err)
	}
	// The registry: all four services.
	waitText(t, ctx, "#services", "inventory", "converter", "netbridge", "lbaas")

	client := inventoryv1.NewInventoryServiceClient(inv.Conn)
	if _, err := client.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: "pg-legacy-1", Workload: &inventoryv1.Workload{
		DisplayName: "pg-legacy-1", Role: "db", Stateful: true, Wave: 3,
		Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "pg-legacy-1"}},
	}}); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, `[data-workload="workloads/pg-legacy-1"]`, "pg-legacy-1", "db · stateful")
	waitText(t, ctx, "#waves", "Wave 3")

	jobs := converterv1.NewConverterServiceClient(cv.Conn)
	specs := []*converterv1.Job{{ // a server that is not there: its pre-flight fails
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: "00000000-0000-4000-8000-000000000000"},
		Destination: &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.tiny", NetworkId: "00000000-0000-4000-8000-000000000001"},
	}}
	want := []string{"JOB_STATE_FAILED"}
	if os.Getenv("CI") == "true" || os.Getenv("HIKKOSHI_P2V") == "1" {
		// The P2V fixture's disk inspected: a job that succeeds.
		specs = append(specs, &converterv1.Job{P2VSource: &converterv1.P2VSource{DiskPath: p2vtest.Fixture(t), InspectOnly: true}})
		want = append(want, "JOB_STATE_SUCCEEDED")
	}
	for i, spec := range specs {
		j, err := jobs.CreateJob(ctx, &converterv1.CreateJobRequest{Job: spec})
		if err != nil {
			t.Fatal(err)
		}
		row := fmt.Sprintf(`tr[data-job=%q]`, j.GetJob().GetName())
		// Each (state, step) the row shows, polled every 50 ms until the job ends.
		var seen []string
		deadline := time.Now().Add(3 * time.Minute)
		for {
			st, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const r = document.querySelector(%q); return r ? r.querySelector("[data-state]").dataset.state + " " + r.querySelector("[data-step]").dataset.step : ""; })()`, row)))
			if st != "" && (len(seen) == 0 || seen[len(seen)-1] != st) {
				seen = append(seen, st)
			}
			if strings.HasPrefix(st, want[i]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s on the page: %v, never %s", j.GetJob().GetName(), seen, want[i])
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("job %s as the page showed it, without a reload: %s", j.GetJob().GetName(), strings.Join(seen, " → "))
		if i == 0 && len(seen) < 2 { // (the P2V inspection may be over before the page first sees it)
			t.Fatalf("job %s: the page showed only %v: no change seen live", j.GetJob().GetName(), seen)
		}
	}

	sameLoad, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.hikkoshi.loadId`))
	if err != nil {
		t.Fatal(err)
	}
	snapshots, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.hikkoshi.snapshots`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	if sameLoad != loadID {
		t.Fatalf("the page was loaded again (%s, then %s)", loadID, sameLoad)
	}
	t.Logf("one page load, %d snapshots drawn from the event stream", snapshots)
	path := os.Getenv("HIKKOSHI_CONSOLE_SCREENSHOT")
	if path == "" {
		path = filepath.Join(t.TempDir(), "console.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))

	// No console without asking, and none on a remote address without saying so.
	out, err := exec.Command(bins["inventory"], "--console-listen", "0.0.0.0:7480").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback only") {
		t.Fatalf("--console-listen 0.0.0.0:7480: %v %s", err, out)
	}
}

// waitText waits until the element sel holds every string.
func waitText(t *testing.T, ctx context.Context, sel string, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var text string
	for time.Now().Before(deadline) {
		text, _ = chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : ""; })()`, sel)))
		ok := true
		for _, w := range wants {
			ok = ok && strings.Contains(text, w)
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: want %q, has %q", sel, wants, text)
}
