package host

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// goMemLimit is the GOMEMLIMIT a Go adapter gets under a memory limit of
// limit bytes: half of it, so that its collector works hard well before
// the hard limit, whose count also holds thread stacks and mappings the
// Go runtime does not see.
func goMemLimit(limit int64) string { return strconv.FormatInt(limit/2, 10) }

// hasEnv reports whether env sets key.
func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// Memory is the adapter process's resident memory in bytes (0 with an
// error where the platform cannot tell, or for an in-process adapter).
func (c *Client) Memory() (int64, error) {
	if c.pid == 0 {
		return 0, fmt.Errorf("host: adapter %s: no process", c.name)
	}
	return residentBytes(c.pid)
}

// MemoryLimit is the limit the process was started under (0: none).
func (c *Client) MemoryLimit() int64 { return c.limit }

// DataLimit is the process's RLIMIT_DATA as set at its start: what its
// data segment held then plus MemoryLimit (0: none set).
func (c *Client) DataLimit() int64 { return c.dataLimit }

// Ping asks the process's gRPC health service (go-plugin's "plugin"
// service, which every adapter serves) whether it answers; ctx bounds the
// wait. A process that is alive but does not answer is hung.
func (c *Client) Ping(ctx context.Context) error {
	if c.health == nil {
		return nil
	}
	resp, err := c.health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "plugin"})
	if err != nil {
		return fmt.Errorf("host: ping adapter %s: %w", c.name, c.callError(ctx, err))
	}
	if s := resp.GetStatus(); s != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("host: ping adapter %s: health %s", c.name, s)
	}
	return nil
}

// Kill ends the process at once (SIGKILL), for one that is hung or over
// its memory limit; Close still has to be called to release the client.
func (c *Client) Kill() {
	if c.kill != nil {
		c.kill()
	}
}

// Stderr is the last lines the process wrote to stderr that were not log
// records: a crash's panic or the Go runtime's "out of memory".
func (c *Client) Stderr() string {
	if c.stderr == nil {
		return ""
	}
	return c.stderr.String()
}

// OutOfMemory is the line in which the process said it ran out of memory
// ("" if it did not): the Go runtime's "fatal error: runtime: out of
// memory", a failed thread creation, a C allocator's message.
func (c *Client) OutOfMemory() string {
	if c.stderr == nil {
		return ""
	}
	return c.stderr.oomLine()
}

func healthClient(conn grpc.ClientConnInterface) grpc_health_v1.HealthClient {
	return grpc_health_v1.NewHealthClient(conn)
}
