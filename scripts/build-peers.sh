#!/usr/bin/env bash
# Builds the real programs the invocation tier runs, from the Go module proxy at pinned releases:
#   daprd    github.com/dapr/dapr  cmd/daprd, unchanged, -tags stablecomponents (tests/peers/dapr)
#   daprd-1.16  dapr/dapr v1.16.5's daprd, the oldest supported minor (tests/peers/dapr-1.16)
#   daprd-etcd  the same daprd plus our "etcd" name resolver, a client of the pluggable component
#   daprd-consul  the same daprd plus Dapr's own consul name resolver, registered as the
#            allcomponents flavor of Dapr's release images does (tests/peers/dapr/daprd-consul)
#   sentry   github.com/dapr/dapr  cmd/sentry, unchanged (tests/peers/dapr)
#   coredns  github.com/coredns/coredns, unchanged (go install at the pinned tag)
#   kube-apiserver, kubectl  k8s.io/kubernetes's own main packages, unchanged (tests/peers/kube)
#   helm     helm.sh/helm/v4, unchanged (go install at the pinned tag)
# and the CustomResourceDefinitions the deployment kit's objects need on a real API server, as
# their projects publish them: Dapr's (charts/dapr/crds of dapr/dapr) and the Prometheus
# Operator's (example/prometheus-operator-crd), from the same module proxy into .peers/crds/.
#   echoapp, invoker   our own small test programs (tests/peers/dapr)
#   consul-peer  our own driver of Dapr's consul name resolver (components-contrib) and
#            github.com/hashicorp/consul/api against the `consul` role (tests/peers/consul)
# None of their source is in this repository. Each build lands in a per-machine cache keyed by
# the release and a hash of our module files ($DAPR_NR_PEERS_CACHE, default
# ~/.cache/dapr-etcd-resolver/peers), so a second run is a no-op, and .peers/bin/ in the
# checkout links to the builds the tests use (tests/support/peers.py reads it).
#
# Needs Go >= 1.26 on PATH (or /usr/local/go/bin). Prints what it built and how long it took.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
DAPR_VERSION=v1.18.2
DAPR_OLDEST_VERSION=v1.16.5  # the oldest supported minor: the invocation tests run against it too
COREDNS_VERSION=v1.15.0
KUBERNETES_VERSION=v1.37.2  # also in tests/peers/kube/go.mod (with its staging modules at v0.37.2)
HELM_VERSION=v4.3.2
# v0.95.x is listed but the module proxy refuses its root module; v0.94.0 is served.
PROMETHEUS_OPERATOR_VERSION=v0.94.0
cache=${DAPR_NR_PEERS_CACHE:-$HOME/.cache/dapr-etcd-resolver/peers}
links="$here/.peers/bin"

export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
    echo "build-peers: Go is not installed (need >= 1.26: the peers are built from the Go module proxy)" >&2
    exit 1
fi
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if ((go_minor < 26)); then
    echo "build-peers: $(go env GOVERSION) is too old; dapr/dapr $DAPR_VERSION needs Go >= 1.26" >&2
    exit 1
fi
# Static binaries with Go's own resolver, as Dapr's and CoreDNS's release images are built.
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

mkdir -p "$cache" "$links"
# key DIR [MODULE]: a hash of the module's go.mod/go.sum and the program's own files (a change rebuilds it)
key() { (cd "$here/tests/peers/${2:-dapr}" && cat go.mod go.sum "$1"/*.go | sha256sum | cut -c1-12); }
started=$(date +%s)
built=()

# build NAME KEY RECIPE: run the function RECIPE (which writes "$out/NAME") unless the cache has KEY.
build() {
    local name=$1 key=$2 recipe=$3
    local dir="$cache/$name-$key"
    if [[ ! -x $dir/$name ]]; then
        local t0
        t0=$(date +%s)
        out="$dir.tmp.$$"
        rm -rf "$out" && mkdir -p "$out"
        echo "build-peers: building $name ($key)…"
        "$recipe"
        rm -rf "$dir" && mv "$out" "$dir"
        built+=("$name $(($(date +%s) - t0)) s")
    fi
    ln -sfn "$dir/$name" "$links/$name"
}

in_module() { (cd "$here/tests/peers/dapr" && go build -trimpath "$@"); }
# daprd and sentry log the release they were built from, as Dapr's own builds do.
stamp() { echo "-X github.com/dapr/dapr/pkg/buildinfo.version=$1"; }
daprd() { in_module -tags stablecomponents -ldflags "$(stamp "$DAPR_VERSION")" -o "$out/daprd" ./daprd; }
daprd_oldest() {
    (cd "$here/tests/peers/dapr-1.16" &&
        go build -trimpath -tags stablecomponents -ldflags "$(stamp "$DAPR_OLDEST_VERSION")" -o "$out/daprd-1.16" ./daprd)
}
daprd_etcd() { in_module -tags stablecomponents -ldflags "$(stamp "$DAPR_VERSION")" -o "$out/daprd-etcd" ./daprd-etcd; }
daprd_consul() { in_module -tags stablecomponents -ldflags "$(stamp "$DAPR_VERSION")" -o "$out/daprd-consul" ./daprd-consul; }
sentry() { in_module -ldflags "$(stamp "$DAPR_VERSION")" -o "$out/sentry" ./sentry; }
echoapp() { in_module -o "$out/echoapp" ./echoapp; }
invoker() { in_module -o "$out/invoker" ./invoker; }
coredns() { GOFLAGS='' GOBIN="$out" go install "github.com/coredns/coredns@$COREDNS_VERSION"; }
# Stamped with the release, as Kubernetes' own builds are (kubectl's version-skew check reads it).
kube_stamp() {
    local minor=${KUBERNETES_VERSION#v1.}
    echo "-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1" \
        "-X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitTreeState=clean"
}
in_kube() { (cd "$here/tests/peers/kube" && go build -trimpath -ldflags "$(kube_stamp)" "$@"); }
kube_apiserver() { in_kube -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver; }
kubectl() { in_kube -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl; }
helm() { GOFLAGS='' GOBIN="$out" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"; }
consul_peer() { (cd "$here/tests/peers/consul" && go build -trimpath -o "$out/consul-peer" ./consulpeer); }
kube_key() { (cd "$here/tests/peers/kube" && cat go.mod go.sum | sha256sum | cut -c1-12); }

build daprd "$DAPR_VERSION-s-$(key daprd)" daprd
build daprd-1.16 "$DAPR_OLDEST_VERSION-s-$(key daprd dapr-1.16)" daprd_oldest
build daprd-etcd "$DAPR_VERSION-s-$(key daprd-etcd)-$(key etcdresolver)" daprd_etcd
build daprd-consul "$DAPR_VERSION-s-$(key daprd-consul)" daprd_consul
build sentry "$DAPR_VERSION-s-$(key sentry)" sentry
build echoapp "$(key echoapp)" echoapp
build invoker "$(key invoker)" invoker
build coredns "$COREDNS_VERSION" coredns
build kube-apiserver "$KUBERNETES_VERSION-s-$(kube_key)" kube_apiserver
build kubectl "$KUBERNETES_VERSION-s-$(kube_key)" kubectl
build helm "$HELM_VERSION" helm
build consul-peer "$(key consulpeer consul)" consul_peer

# module_dir MODULE@VERSION: where the Go module proxy's copy of a module is unpacked.
module_dir() { (cd "$here/tests/peers/kube" && GOFLAGS='' go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'); }
crds="$here/.peers/crds"
rm -rf "$crds" && mkdir -p "$crds/dapr" "$crds/prometheus-operator"
cp "$(module_dir "github.com/dapr/dapr@$DAPR_VERSION")"/charts/dapr/crds/*.yaml "$crds/dapr/"
cp "$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"/example/prometheus-operator-crd/*.yaml \
    "$crds/prometheus-operator/"

printf 'DAPR_VERSION=%s\nDAPR_OLDEST_VERSION=%s\nCOREDNS_VERSION=%s\nKUBERNETES_VERSION=%s\nHELM_VERSION=%s\nPROMETHEUS_OPERATOR_VERSION=%s\n' \
    "$DAPR_VERSION" "$DAPR_OLDEST_VERSION" "$COREDNS_VERSION" "$KUBERNETES_VERSION" "$HELM_VERSION" \
    "$PROMETHEUS_OPERATOR_VERSION" > "$here/.peers/versions.env"
if ((${#built[@]})); then
    echo "build-peers: built ${built[*]} in $(($(date +%s) - started)) s; cache $(du -sh "$cache" | cut -f1)"
fi
