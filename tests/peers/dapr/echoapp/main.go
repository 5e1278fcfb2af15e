// Command echoapp is the application behind each test daprd: every request, whatever its path,
// is answered with a small JSON document naming the cluster and the instance that served it,
// which is how the invocation tests count where each call landed.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type reply struct {
	App      string `json:"app"`
	Cluster  string `json:"cluster"`
	Instance string `json:"instance"`
	Method   string `json:"method"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:3000", "address to serve HTTP on")
	app := flag.String("app", "", "the Dapr app id this instance serves")
	cluster := flag.String("cluster", "", "the cluster this instance runs in")
	instance := flag.String("instance", "", "this instance's name")
	flag.Parse()

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reply{App: *app, Cluster: *cluster, Instance: *instance, Method: r.URL.Path})
	})
	server := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 5 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		_ = server.Close()
	}()
	log.Printf("echoapp %s/%s serving on %s", *cluster, *instance, *listen)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
