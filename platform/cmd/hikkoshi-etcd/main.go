// Command hikkoshi-etcd is a standalone etcd server: etcd's own main
// (go.etcd.io/etcd/server/v3/etcdmain), built from the same etcd version the Hikkoshi
// services use, so that development and CI need no separately packaged etcd. It takes
// etcd's usual flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
