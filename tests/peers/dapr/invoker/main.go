// Command invoker is the caller app of the invocation tests: it invokes one app through its own
// daprd, over daprd's HTTP API (/v1.0/invoke/{id}/method/{method}) or its gRPC API
// (InvokeService), one call after another, and writes one JSON line per invocation: when it
// started, how long it took, which cluster and instance answered, or the error daprd returned.
// The tests and bench/invocation.py count failures and shares from those lines.
//
// It runs until -count invocations are done, -duration has passed, or SIGTERM.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type answer struct {
	Cluster  string `json:"cluster"`
	Instance string `json:"instance"`
}

type line struct {
	Start    float64 `json:"t"`
	Millis   float64 `json:"ms"`
	OK       bool    `json:"ok"`
	Cluster  string  `json:"cluster,omitempty"`
	Instance string  `json:"instance,omitempty"`
	Error    string  `json:"error,omitempty"`
}

type invokeFunc func(ctx context.Context) (answer, error)

func main() {
	mode := flag.String("mode", "http", "http: daprd's HTTP API; grpc: daprd's gRPC API")
	httpAddr := flag.String("http", "127.0.0.1:3500", "daprd's HTTP API address")
	grpcAddr := flag.String("grpc", "127.0.0.1:50001", "daprd's gRPC API address")
	target := flag.String("target", "", "app id to invoke, as {id} or {id}.{namespace}")
	method := flag.String("method", "whoami", "method to invoke")
	count := flag.Int("count", 0, "stop after this many invocations (0: no limit)")
	duration := flag.Duration("duration", 0, "stop after this long (0: no limit)")
	interval := flag.Duration("interval", 0, "pause between invocations")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of one invocation (a caller app's own)")
	out := flag.String("out", "-", "file to append the JSON lines to (-: stdout)")
	flag.Parse()
	if *target == "" {
		log.Fatal("invoker: -target is required")
	}

	var invoke invokeFunc
	switch *mode {
	case "http":
		invoke = httpInvoker(*httpAddr, *target, *method)
	case "grpc":
		var err error
		if invoke, err = grpcInvoker(*grpcAddr, *target, *method); err != nil {
			log.Fatalf("invoker: %v", err)
		}
	default:
		log.Fatalf("invoker: -mode must be http or grpc, not %q", *mode)
	}

	sink := os.Stdout
	if *out != "-" {
		file, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			log.Fatalf("invoker: %v", err)
		}
		defer file.Close()
		sink = file
	}
	writer := bufio.NewWriter(sink)
	defer writer.Flush()

	var stopped atomic.Bool
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		stopped.Store(true)
	}()

	begin := time.Now()
	for n := 0; !stopped.Load(); n++ {
		if (*count > 0 && n >= *count) || (*duration > 0 && time.Since(begin) >= *duration) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		start := time.Now()
		got, err := invoke(ctx)
		cancel()
		record := line{Start: float64(start.UnixNano()) / 1e9, Millis: float64(time.Since(start).Microseconds()) / 1000}
		if err != nil {
			record.Error = err.Error()
		} else {
			record.OK, record.Cluster, record.Instance = true, got.Cluster, got.Instance
		}
		encoded, _ := json.Marshal(record)
		_, _ = writer.Write(append(encoded, '\n'))
		_ = writer.Flush()
		if *interval > 0 {
			time.Sleep(*interval)
		}
	}
}

func httpInvoker(address, target, method string) invokeFunc {
	client := &http.Client{}
	url := fmt.Sprintf("http://%s/v1.0/invoke/%s/method/%s", address, target, method)
	return func(ctx context.Context) (answer, error) {
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return answer{}, err
		}
		response, err := client.Do(request)
		if err != nil {
			return answer{}, err
		}
		defer response.Body.Close()
		body, err := io.ReadAll(io.LimitReader(response.Body, 1<<16))
		if err != nil {
			return answer{}, err
		}
		if response.StatusCode != http.StatusOK {
			return answer{}, fmt.Errorf("HTTP %d: %s", response.StatusCode, body)
		}
		return decode(body)
	}
}

func grpcInvoker(address, target, method string) (invokeFunc, error) {
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	client := runtimev1.NewDaprClient(conn)
	return func(ctx context.Context) (answer, error) {
		response, err := client.InvokeService(ctx, &runtimev1.InvokeServiceRequest{
			Id: target,
			Message: &commonv1.InvokeRequest{
				Method:        method,
				HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_GET},
			},
		})
		if err != nil {
			return answer{}, err
		}
		return decode(response.GetData().GetValue())
	}, nil
}

func decode(body []byte) (answer, error) {
	var got answer
	if err := json.Unmarshal(body, &got); err != nil {
		return answer{}, fmt.Errorf("not the echo app's reply: %q", body)
	}
	return got, nil
}
