package cloud

import (
	"context"
	"errors"
	"testing"
)

func TestMemoOpensOnceAndRetriesFailures(t *testing.T) {
	opens := map[string]int{}
	fail := true
	open := Memo(func(_ context.Context, name string) (int, error) {
		opens[name]++
		if name == "flaky" && fail {
			return 0, errors.New("keystone restarting")
		}
		return len(name), nil
	})
	ctx := t.Context()
	for range 3 {
		if v, err := open(ctx, "old"); err != nil || v != 3 {
			t.Fatalf("old: %v %v", v, err)
		}
	}
	if _, err := open(ctx, "flaky"); err == nil {
		t.Fatal("a failed open was not passed on")
	}
	fail = false
	if v, err := open(ctx, "flaky"); err != nil || v != 5 {
		t.Fatalf("flaky after recovery: %v %v", v, err)
	}
	if opens["old"] != 1 || opens["flaky"] != 2 {
		t.Fatalf("opens %v: want old once, flaky twice", opens)
	}
}
