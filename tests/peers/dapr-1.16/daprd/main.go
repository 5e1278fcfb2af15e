// Command daprd is the stock Dapr sidecar of the oldest supported minor (v1.16), unchanged: it
// calls daprd's own entry point. Build with -tags stablecomponents (see ../../dapr/daprd).
package main

import "github.com/dapr/dapr/cmd/daprd/app"

func main() {
	app.Run()
}
