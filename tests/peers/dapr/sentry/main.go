// Command sentry is Dapr's certificate authority, unchanged, from the pinned dapr/dapr release:
// the suite runs one per test cluster to prove (or refute) cross-cluster mTLS.
package main

import "github.com/dapr/dapr/cmd/sentry/app"

func main() {
	app.Run()
}
