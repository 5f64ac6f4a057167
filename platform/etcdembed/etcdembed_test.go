package etcdembed_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hikkoshi/hikkoshi/platform/etcdembed"
)

// TestAuth: with WithAuth the server refuses a client without the password (and one
// with a wrong one), serves one with it, and keeps auth on across a restart.
func TestAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	start := func(password string) *etcdembed.Server {
		t.Helper()
		s, err := etcdembed.Start(ctx, dir, etcdembed.WithClientURL("http://127.0.0.1:0"),
			etcdembed.WithPeerURL("http://127.0.0.1:0"), etcdembed.WithAuth("root", password))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	put := func(s *etcdembed.Server, user, password string) error {
		c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), Username: user, Password: password,
			DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer c.Close()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err = c.Put(cctx, "/k", "v")
		return err
	}
	s := start("sentinel-etcd-pw")
	if err := put(s, "", ""); err == nil {
		t.Error("a client without credentials wrote to an auth-enabled server")
	}
	if err := put(s, "root", "wrong"); err == nil {
		t.Error("a client with a wrong password wrote")
	}
	if err := put(s, "root", "sentinel-etcd-pw"); err != nil {
		t.Errorf("root with the password: %v", err)
	}
	s.Close()

	s = start("sentinel-etcd-pw") // auth already on: the password is checked
	if err := put(s, "", ""); err == nil {
		t.Error("after a restart, a client without credentials wrote")
	}
	s.Close()
	if _, err := etcdembed.Start(ctx, dir, etcdembed.WithClientURL("http://127.0.0.1:0"),
		etcdembed.WithPeerURL("http://127.0.0.1:0"), etcdembed.WithAuth("root", "wrong")); err == nil {
		t.Error("a restart with a wrong password started")
	}
	if _, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithClientURL("http://127.0.0.1:0"),
		etcdembed.WithPeerURL("http://127.0.0.1:0"), etcdembed.WithAuth("hikkoshi", "pw")); err == nil {
		t.Error("a user other than root was accepted")
	}
}
