// authz-floor: the least an ext_authz gRPC service can do — answer every Check
// with OK and nothing else — so that bench/authz.bench.ts can measure what
// Envoy's ext_authz call costs by itself on this machine (Envoy's CheckRequest,
// the HTTP/2 round trip, the response), beside what Sluice's service adds.
// Built by bench/setup.sh with the Go toolchain; not part of the product.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

type allowAll struct {
	authv3.UnimplementedAuthorizationServer
}

var okResponse = &authv3.CheckResponse{
	Status:       &statuspb.Status{Code: 0},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

func main() {
	address := flag.String("listen", "127.0.0.1:0", "host:port to serve on")
	flag.Parse()
	listener, err := net.Listen("tcp", *address)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server := grpc.NewServer()
	authv3.RegisterAuthorizationServer(server, allowAll{})
	// The bench reads the bound port from this line.
	fmt.Printf("listening %d\n", listener.Addr().(*net.TCPAddr).Port)
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
