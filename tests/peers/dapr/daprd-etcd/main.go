// Command daprd-etcd is the stock daprd with one more name resolver compiled in: "etcd", a thin
// client of the dapr-etcd-resolver pluggable component's Unix socket (package etcdresolver).
// Everything else is daprd's own entry point, unchanged; build with -tags stablecomponents.
// docs/pluggable-daprd.md says how a user builds it.
package main

import (
	"github.com/dapr/dapr/cmd/daprd/app"

	_ "github.com/dapr-etcd-resolver/tests/peers/dapr/etcdresolver"
)

func main() {
	app.Run()
}
