// Command daprd is the stock Dapr sidecar, unchanged: it calls daprd's own entry point from the
// pinned github.com/dapr/dapr release. It exists only so the test suite can build the real
// daprd from the Go module proxy (dapr/dapr's go.mod has replace directives, so
// `go install github.com/dapr/dapr/cmd/daprd@version` refuses it).
//
// Build with -tags stablecomponents, the flavor Dapr's release images use for the kubernetes
// and mdns name resolvers; a build without a flavor tag panics at start.
package main

import "github.com/dapr/dapr/cmd/daprd/app"

func main() {
	app.Run()
}
