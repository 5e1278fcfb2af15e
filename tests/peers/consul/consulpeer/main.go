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
//	register Serve daprd's health endpoint (/v1.0/healthz: 204, or 500 once told "fail") on
//	         loopback, Init with selfRegister: true (-check-interval: a check of that interval
//	         instead of Dapr's default 15 s one; -check-url: another check URL; -host: the
//	         Instance address; -deregister: selfDeregister), print {"init": "ok", "id": …,
//	         "healthPort": …} (or the error), then read stdin: "fail"/"ok" switch the health
//	         endpoint, EOF or SIGTERM ends the run with Close: {"closed": "ok"} or the error.
//	query    One request with consul/api: -path service (Health().Service(-app, passing)),
//	         state (Health().State("any") with -filter) or self (Agent().Self()), with
//	         -index/-wait for a blocking query; prints one JSON line with the entries, the
//	         QueryMeta (index, known leader, last contact) and how long the request took.
//
// Every run ends on its own; SIGTERM closes the resolver first.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
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

	host          string
	checkInterval string
	checkURL      string
	deregister    bool
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
	flag.StringVar(&o.host, "host", "127.0.0.1", "register mode: the Instance address (what is registered)")
	flag.StringVar(&o.checkInterval, "check-interval", "", "register mode: a check of this Interval (empty: Dapr's default)")
	flag.StringVar(&o.checkURL, "check-url", "", "register mode: the check's URL (empty: daprd's healthz)")
	flag.BoolVar(&o.deregister, "deregister", true, "register mode: selfDeregister (deregister on Close)")
	flag.Parse()

	out := json.NewEncoder(os.Stdout)
	var err error
	switch o.mode {
	case "resolve", "init":
		err = resolve(o, out)
	case "query":
		err = query(o, out)
	case "register":
		err = register(o, out)
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

// register plays a self-hosted daprd with selfRegister: its health endpoint, Init, then Close.
func register(o options, out *json.Encoder) error {
	var healthy atomic.Bool
	healthy.Store(true)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1.0/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if healthy.Load() {
			w.WriteHeader(http.StatusNoContent) // what daprd answers when healthy
			return
		}
		http.Error(w, "dapr is not ready", http.StatusInternalServerError)
	})
	go func() { _ = http.Serve(listener, mux) }()
	httpPort := listener.Addr().(*net.TCPAddr).Port
	id := o.app + "-" + o.host + "-" + strconv.Itoa(httpPort) // what the resolver derives
	configuration := map[string]any{
		"client":         map[string]any{"address": o.address, "token": o.token},
		"selfRegister":   true,
		"selfDeregister": o.deregister,
	}
	if o.metaKey != "" {
		configuration["daprPortMetaKey"] = o.metaKey
	}
	if o.checkInterval != "" || o.checkURL != "" {
		url := o.checkURL
		if url == "" {
			url = fmt.Sprintf("http://%s/v1.0/healthz?appid=%s", net.JoinHostPort(o.host, strconv.Itoa(httpPort)), o.app)
		}
		interval := o.checkInterval
		if interval == "" {
			interval = "15s"
		}
		configuration["checks"] = []any{map[string]any{
			"name": "Dapr Health Status", "checkID": "daprHealth:" + id, "interval": interval, "http": url,
		}}
	}
	resolver := consulnr.NewResolver(logger.NewLogger("consulpeer"))
	err = resolver.Init(context.Background(), nr.Metadata{
		Instance: nr.Instance{
			AppID: o.app, Namespace: o.ns, Address: o.host,
			DaprHTTPPort: httpPort, DaprInternalPort: 50002, AppPort: 8080,
		},
		Configuration: configuration,
	})
	if err != nil {
		return out.Encode(map[string]any{"init": "error", "error": err.Error()})
	}
	if err := out.Encode(map[string]any{"init": "ok", "id": id, "healthPort": httpPort}); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			switch strings.TrimSpace(scanner.Text()) {
			case "fail":
				healthy.Store(false)
				_ = out.Encode(map[string]any{"health": "failing", "t": float64(time.Now().UnixNano()) / 1e9})
			case "ok":
				healthy.Store(true)
				_ = out.Encode(map[string]any{"health": "passing", "t": float64(time.Now().UnixNano()) / 1e9})
			}
		}
		close(done)
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-stop:
	}
	if err := resolver.(interface{ Close() error }).Close(); err != nil {
		return out.Encode(map[string]any{"closed": "error", "error": err.Error()})
	}
	return out.Encode(map[string]any{"closed": "ok"})
}
