package cmd

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/cliout"
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// barView is a watched job on a terminal: one bar of the image copy's verified
// bytes, with the job's step before it and the service's rate and ETA after it.
type barView struct {
	p   *mpb.Progress
	bar *mpb.Bar

	mu  sync.Mutex
	job *converterv1.Job
}

func newBarView(w io.Writer) *barView {
	v := &barView{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(160), mpb.WithRefreshRate(200*time.Millisecond), mpb.WithAutoRefresh())}
	// WithWidth is the line's width when w is not a terminal; the bar itself is 32.
	v.bar = v.p.New(0, mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"), mpb.BarWidth(32),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			v.mu.Lock()
			defer v.mu.Unlock()
			return fmt.Sprintf("%s %-9s %-8s", v.job.GetName(), cliout.Short(v.job.GetState().String(), "JOB_STATE_"), cliout.Short(v.job.GetStep().String(), "JOB_STEP_"))
		}, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			v.mu.Lock()
			defer v.mu.Unlock()
			p := v.job.GetProgress()
			if p.GetTotalBytes() == 0 {
				return v.job.GetWaiting()
			}
			s := fmt.Sprintf("%3d%% %s / %s", p.GetDoneBytes()*100/p.GetTotalBytes(), bytesIEC(p.GetDoneBytes()), bytesIEC(p.GetTotalBytes()))
			if p.GetDoneBytes() < p.GetTotalBytes() && p.GetBytesPerSecond() > 0 {
				s += fmt.Sprintf("  %s/s  ETA %s", bytesIEC(p.GetBytesPerSecond()), time.Duration(p.GetEtaSeconds())*time.Second)
			}
			return s
		})))
	return v
}

func (v *barView) update(j *converterv1.Job) {
	v.mu.Lock()
	v.job = j
	v.mu.Unlock()
	if p := j.GetProgress(); p.GetTotalBytes() > 0 {
		v.bar.SetTotal(p.GetTotalBytes(), false)
		v.bar.SetCurrent(p.GetDoneBytes())
	}
}

func (v *barView) done(j *converterv1.Job) {
	if j != nil {
		v.update(j)
	}
	if j.GetState() == converterv1.JobState_JOB_STATE_SUCCEEDED {
		v.bar.SetTotal(-1, true)
	} else {
		v.bar.Abort(false)
	}
	v.p.Wait()
	if e := j.GetError(); e != "" {
		fmt.Fprintf(os.Stderr, "error: %s\n", e)
	}
}
