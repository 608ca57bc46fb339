package wire

import (
	"context"
	"strings"

	"google.golang.org/grpc"
)

// One process may serve several adapter kinds (the built-ins of the
// remora binary share one, so an idle daemon carries one Go runtime for
// its adapters, not one per kind). Each kind is the same service under its
// own name, remora.adapter.v1.Adapter.KIND: the messages, handles and
// semantics stay those of one adapter per process, and nothing is added
// to a request.

// KindService is the service name adapter kind is served under in a
// process that serves several ("" is the one-adapter service).
func KindService(kind string) string {
	if kind == "" {
		return Adapter_ServiceDesc.ServiceName
	}
	return Adapter_ServiceDesc.ServiceName + "." + kind
}

// RegisterKind registers srv as adapter kind on s.
func RegisterKind(s grpc.ServiceRegistrar, kind string, srv AdapterServer) {
	desc := Adapter_ServiceDesc
	desc.ServiceName = KindService(kind)
	s.RegisterService(&desc, srv)
}

// KindConn returns conn as seen by a client of adapter kind: every method
// is called on that kind's service.
func KindConn(conn grpc.ClientConnInterface, kind string) grpc.ClientConnInterface {
	if kind == "" {
		return conn
	}
	return kindConn{conn: conn, prefix: "/" + KindService(kind) + "/"}
}

type kindConn struct {
	conn   grpc.ClientConnInterface
	prefix string
}

// method maps /remora.adapter.v1.Adapter/M to the kind's /SERVICE/M.
func (k kindConn) method(m string) string {
	return k.prefix + m[strings.LastIndexByte(m, '/')+1:]
}

func (k kindConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return k.conn.Invoke(ctx, k.method(method), args, reply, opts...)
}

func (k kindConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return k.conn.NewStream(ctx, desc, k.method(method), opts...)
}
