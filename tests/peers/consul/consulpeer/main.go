// Command consulpeer drives two clients nobody here wrote against the resolver's `consul` role:
// Dapr's consul name resolver (components-contrib nameresolution/hashicorp/consul, the version
// daprd v1.18.2 links) and github.com/hashicorp/consul/api, the HTTP client that resolver uses.
//
// Modes (-mode):
//
//	resolve  Init the resolver (selfRegister off; -use-cache on or off), then ResolveID -count
//	         times (or for -duration), -interval apart, one JSON line per call:
//	         {"t": unix seconds, "addr": "host:port"} or {"t": …, "error": "…"}. A line
//	         {"ready": true} follows Init, and {"done": true} ends the run.
//	init     Init only: {"init": "ok"} or {"init": "error", "error": "…"}.
//	query    One request with consul/api: -path service (Health().Service(-app, passing)),
//	         state (Health().State("any") with -filter) or self (Agent().Self()), with
//	         -index/-wait for a blocking query; prints one JSON line with the entries, the
//	         QueryMeta (index, known leader, last contact) and how long the request took.
//
// Every run ends on its own; SIGTERM closes the resolver first.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	nr "github.com/dapr/components-contrib/nameresolution"
	consulnr "github.com/dapr/components-contrib/nameresolution/hashicorp/consul"
	"github.com/dapr/kit/logger"
	"github.com/hashicorp/consul/api"
)

type options struct {
	mode     string
	address  string
	token    string
	app      string
	ns       string
	metaKey  string
	useCache bool
	count    int
	duration time.Duration
	interval time.Duration
	path     string
	filter   string
	index    uint64
	wait     time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "resolve", "resolve, init or query")
	flag.StringVar(&o.address, "address", "127.0.0.1:8500", "the Consul-compatible catalog, HOST:PORT")
	flag.StringVar(&o.token, "token", "", "X-Consul-Token to send")
	flag.StringVar(&o.app, "app", "", "app id to resolve or query")
	flag.StringVar(&o.ns, "ns", "", "query mode: the ns parameter (QueryOptions.Namespace)")
	flag.StringVar(&o.metaKey, "meta-key", "", "the resolver's daprPortMetaKey (empty: its default)")
	flag.BoolVar(&o.useCache, "use-cache", false, "the resolver's useCache")
	flag.IntVar(&o.count, "count", 1, "resolve mode: calls (0: until -duration)")
	flag.DurationVar(&o.duration, "duration", 0, "resolve mode: stop after this long")
	flag.DurationVar(&o.interval, "interval", 0, "resolve mode: pause between calls")
	flag.StringVar(&o.path, "path", "service", "query mode: service, state or self")
	flag.StringVar(&o.filter, "filter", "", "query mode: the filter expression")
	flag.Uint64Var(&o.index, "index", 0, "query mode: WaitIndex (0: not blocking)")
	flag.DurationVar(&o.wait, "wait", 0, "query mode: WaitTime")
	flag.Parse()

	out := json.NewEncoder(os.Stdout)
	var err error
	switch o.mode {
	case "resolve", "init":
		err = resolve(o, out)
	case "query":
		err = query(o, out)
	default:
		err = fmt.Errorf("unknown -mode %q", o.mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "consulpeer:", err)
		os.Exit(1)
	}
}

func resolve(o options, out *json.Encoder) error {
	configuration := map[string]any{
		"client":   map[string]any{"address": o.address, "token": o.token},
		"useCache": o.useCache,
	}
	if o.metaKey != "" {
		configuration["daprPortMetaKey"] = o.metaKey
	}
	resolver := consulnr.NewResolver(logger.NewLogger("consulpeer"))
	err := resolver.Init(context.Background(), nr.Metadata{
		Instance: nr.Instance{
			AppID: "consulpeer", Namespace: o.ns, Address: "127.0.0.1",
			DaprHTTPPort: 3500, DaprInternalPort: 50002, AppPort: 8080,
		},
		Configuration: configuration,
	})
	if o.mode == "init" {
		if err != nil {
			return out.Encode(map[string]any{"init": "error", "error": err.Error()})
		}
		return out.Encode(map[string]any{"init": "ok"})
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	defer resolver.(interface{ Close() error }).Close()
	if err := out.Encode(map[string]any{"ready": true}); err != nil {
		return err
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	deadline := time.Time{}
	if o.duration > 0 {
		deadline = time.Now().Add(o.duration)
	}
	request := nr.ResolveRequest{ID: o.app, Namespace: o.ns, Port: 50002}
	for i := 0; o.count == 0 || i < o.count; i++ {
		if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		select {
		case <-stop:
			return out.Encode(map[string]any{"done": true})
		default:
		}
		addr, err := resolver.ResolveID(context.Background(), request)
		line := map[string]any{"t": float64(time.Now().UnixNano()) / 1e9}
		if err != nil {
			line["error"] = err.Error()
		} else {
			line["addr"] = addr
		}
		if err := out.Encode(line); err != nil {
			return err
		}
		if o.interval > 0 {
			time.Sleep(o.interval)
		}
	}
	return out.Encode(map[string]any{"done": true})
}

func query(o options, out *json.Encoder) error {
	client, err := api.NewClient(&api.Config{Address: o.address, Token: o.token})
	if err != nil {
		return err
	}
	q := &api.QueryOptions{WaitIndex: o.index, WaitTime: o.wait, Filter: o.filter, Namespace: o.ns}
	started := time.Now()
	var result any
	var meta *api.QueryMeta
	switch o.path {
	case "service":
		result, meta, err = client.Health().Service(o.app, "", true, q)
	case "state":
		result, meta, err = client.Health().State(api.HealthAny, q)
	case "self":
		result, err = client.Agent().Self()
	default:
		return fmt.Errorf("unknown -path %q", o.path)
	}
	line := map[string]any{"seconds": time.Since(started).Seconds()}
	if err != nil {
		line["error"] = err.Error()
	} else {
		line["result"] = result
	}
	if meta != nil {
		line["index"] = meta.LastIndex
		line["knownLeader"] = meta.KnownLeader
		line["lastContactNs"] = meta.LastContact.Nanoseconds()
	}
	return out.Encode(line)
}
