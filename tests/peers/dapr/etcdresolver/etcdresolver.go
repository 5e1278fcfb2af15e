// Package etcdresolver registers a Dapr name resolver named "etcd" that is a thin gRPC client of
// the dapr-etcd-resolver pluggable component on its Unix socket: Init, ResolveID,
// ResolveIDMulti and Close are forwarded as they are, so daprd's real invocation path runs on
// the component's answers. It is the shape dapr/dapr#7649 asks daprd to support natively (no
// released daprd loads a pluggable name resolver: it initializes name resolution before it
// discovers pluggable components).
//
// The messages are those of proto/dapr/proto/components/v1/nameresolution.proto, encoded with
// protowire rather than generated code: generated Go stubs would register the message names
// dapr.proto.components.v1.* that daprd's own protos already register, and Go's protobuf
// registry refuses such a conflict at start-up.
//
// Configuration (the Dapr Configuration's nameResolution.configuration): "socket" is the
// component's socket (default $DAPR_COMPONENTS_SOCKETS_FOLDER/etcd.sock, the folder defaulting
// to /tmp/dapr-components-sockets); every other key goes to the component's Init as it is.
package etcdresolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/dapr/components-contrib/nameresolution"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	"github.com/dapr/kit/logger"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	service       = "/dapr.proto.components.v1.NameResolution/"
	callTimeout   = 5 * time.Second
	instanceKey   = "x-component-instance"
	defaultFolder = "/tmp/dapr-components-sockets"
)

func init() {
	nrLoader.DefaultRegistry.RegisterComponent(func(log logger.Logger) nameresolution.Resolver {
		return &resolver{log: log}
	}, "etcd")
}

type resolver struct {
	log      logger.Logger
	conn     *grpc.ClientConn
	instance string
}

var (
	_ nameresolution.Resolver      = (*resolver)(nil)
	_ nameresolution.ResolverMulti = (*resolver)(nil)
)

// Init dials the component's socket and forwards the sidecar's metadata and configuration.
func (r *resolver) Init(ctx context.Context, md nameresolution.Metadata) error {
	configuration := map[string]any{}
	if md.Configuration != nil {
		encoded, err := json.Marshal(md.Configuration)
		if err != nil {
			return fmt.Errorf("etcd name resolver: configuration is not JSON-encodable: %w", err)
		}
		if err := json.Unmarshal(encoded, &configuration); err != nil {
			return fmt.Errorf("etcd name resolver: configuration must be a mapping: %w", err)
		}
	}
	socket, _ := configuration["socket"].(string)
	delete(configuration, "socket")
	if socket == "" {
		folder := os.Getenv("DAPR_COMPONENTS_SOCKETS_FOLDER")
		if folder == "" {
			folder = defaultFolder
		}
		socket = filepath.Join(folder, "etcd.sock")
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return fmt.Errorf("etcd name resolver: socket %s: %w", socket, err)
	}
	r.conn, r.instance = conn, md.Name
	text, err := json.Marshal(configuration)
	if err != nil {
		return err
	}
	request := initRequest(md.Properties, md.Instance, string(text))
	if _, err := r.call(ctx, "Init", request); err != nil {
		return fmt.Errorf("etcd name resolver: Init on %s: %w", socket, err)
	}
	r.log.Infof("etcd name resolver: using the component on %s", socket)
	return nil
}

// ResolveID returns the component's one address for the app.
func (r *resolver) ResolveID(ctx context.Context, req nameresolution.ResolveRequest) (string, error) {
	reply, err := r.call(ctx, "ResolveID", resolveRequest(req))
	if err != nil {
		return "", err
	}
	addresses := stringField(reply, 1)
	if len(addresses) == 0 {
		return "", errors.New("etcd name resolver: the component answered no address")
	}
	return addresses[0], nil
}

// ResolveIDMulti returns every candidate; daprd caches the list and picks one per invocation.
func (r *resolver) ResolveIDMulti(ctx context.Context, req nameresolution.ResolveRequest) (nameresolution.AddressList, error) {
	reply, err := r.call(ctx, "ResolveIDMulti", resolveRequest(req))
	if err != nil {
		return nil, err
	}
	return stringField(reply, 1), nil
}

// Close forwards Close and drops the connection.
func (r *resolver) Close() error {
	if r.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	_, err := r.call(ctx, "Close", nil)
	return errors.Join(err, r.conn.Close())
}

func (r *resolver) call(ctx context.Context, method string, request []byte) ([]byte, error) {
	if r.conn == nil {
		return nil, errors.New("etcd name resolver: not initialized")
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if r.instance != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, instanceKey, r.instance)
	}
	var reply []byte
	err := r.conn.Invoke(ctx, service+method, request, &reply)
	return reply, err
}

// --- the messages of nameresolution.proto ---------------------------------------------------

func initRequest(properties map[string]string, instance nameresolution.Instance, configuration string) []byte {
	var metadataRequest []byte
	metadataRequest = appendMap(metadataRequest, 1, properties) // MetadataRequest.properties
	var sidecar []byte
	sidecar = appendString(sidecar, 1, instance.AppID)
	sidecar = appendString(sidecar, 2, instance.Namespace)
	sidecar = appendString(sidecar, 3, instance.Address)
	sidecar = appendInt(sidecar, 4, instance.DaprHTTPPort)
	sidecar = appendInt(sidecar, 5, instance.DaprInternalPort)
	sidecar = appendInt(sidecar, 6, instance.AppPort)
	var out []byte
	out = appendBytes(out, 1, metadataRequest)
	out = appendBytes(out, 2, sidecar)
	return appendString(out, 3, configuration)
}

func resolveRequest(req nameresolution.ResolveRequest) []byte {
	var out []byte
	out = appendString(out, 1, req.ID)
	out = appendString(out, 2, req.Namespace)
	out = appendInt(out, 3, req.Port)
	return appendMap(out, 4, req.Data)
}

func appendString(out []byte, field protowire.Number, value string) []byte {
	if value == "" {
		return out
	}
	out = protowire.AppendTag(out, field, protowire.BytesType)
	return protowire.AppendString(out, value)
}

func appendBytes(out []byte, field protowire.Number, value []byte) []byte {
	out = protowire.AppendTag(out, field, protowire.BytesType)
	return protowire.AppendBytes(out, value)
}

func appendInt(out []byte, field protowire.Number, value int) []byte {
	if value == 0 {
		return out
	}
	out = protowire.AppendTag(out, field, protowire.VarintType)
	return protowire.AppendVarint(out, uint64(int64(int32(value))))
}

func appendMap(out []byte, field protowire.Number, values map[string]string) []byte {
	keys := make([]string, 0, len(values))
	for key := range values {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, key)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendString(entry, values[key])
		out = appendBytes(out, field, entry)
	}
	return out
}

// stringField reads the repeated string field of a reply (ResolveResponse.address,
// ResolveMultiResponse.addresses), skipping any other field.
func stringField(message []byte, field protowire.Number) []string {
	var found []string
	for len(message) > 0 {
		number, kind, n := protowire.ConsumeTag(message)
		if n < 0 {
			return found
		}
		message = message[n:]
		if number == field && kind == protowire.BytesType {
			value, m := protowire.ConsumeString(message)
			if m < 0 {
				return found
			}
			found = append(found, value)
			message = message[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(number, kind, message)
		if m < 0 {
			return found
		}
		message = message[m:]
	}
	return found
}

// rawCodec sends the bytes built above as they are and hands replies back undecoded.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch message := v.(type) {
	case []byte:
		return message, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("etcd name resolver: cannot encode %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	target, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("etcd name resolver: cannot decode into %T", v)
	}
	*target = append((*target)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
