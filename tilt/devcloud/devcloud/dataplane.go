package devcloud

import (
	"os"
	"syscall"
)

// The dev cloud's data plane (tilt/devcloud/dataplane): the network namespace where
// its servers' stand-ins and its load balancers' haproxy answer, and the address its
// traffic meter sends from. Nothing in the host's namespace may send to the dev
// cloud's addresses; devcloud.sh makes them unreachable there.
const (
	Netns      = "hikkoshi-dp"
	ClientAddr = "100.64.0.10"
	// Bastion is the data plane's jump host (tilt/devcloud/dataplane/bastion.py): a
	// SOCKS5 proxy on the host's loopback that connects inside the namespace, for
	// health probes from the host's namespace (converter --probe-proxy).
	Bastion = "socks5://127.0.0.1:1080"
)

// DevcloudRanges are the dev cloud's address ranges, unreachable from the host's
// namespace while the data plane is up.
var DevcloudRanges = []string{"10.96.0.0/11", "10.128.0.0/10", "10.192.0.0/12", "198.51.100.0/24"}

// InNetns reports whether this process runs inside the data plane's namespace.
func InNetns() bool {
	var a, b syscall.Stat_t
	if syscall.Stat("/proc/self/ns/net", &a) != nil || syscall.Stat("/run/netns/"+Netns, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// NetnsUp reports whether the data plane's namespace exists.
func NetnsUp() bool {
	_, err := os.Stat("/run/netns/" + Netns)
	return err == nil
}
