// Command daprd-consul is the stock daprd with Dapr's own consul name resolver
// (components-contrib nameresolution/hashicorp/consul), registered exactly as dapr/dapr's
// cmd/daprd/components/nameresolution_hashicorp_consul.go does in the allcomponents flavor that
// Dapr's default release images are built with. That file's build tag is allcomponents only, so
// the stablecomponents build of ../daprd lacks the resolver; this program mirrors the file and
// is otherwise daprd's own entry point, unchanged. Build with -tags stablecomponents.
//
// Why not -tags allcomponents: it builds (about 2 minutes more here), but every component's
// initialisation doubles daprd's memory (RSS 180 MB instead of 87 MB at start), and the
// invocation tier runs up to 26 daprds on one machine. The consul resolver's code and its
// registration are the same either way.
package main

import (
	"github.com/dapr/components-contrib/nameresolution/hashicorp/consul"
	"github.com/dapr/dapr/cmd/daprd/app"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
)

func init() {
	// As nameresolution_hashicorp_consul.go (allcomponents) of dapr/dapr v1.18.2.
	nrLoader.DefaultRegistry.RegisterComponent(consul.NewResolver, "hashicorp.consul", "consul")
}

func main() {
	app.Run()
}
