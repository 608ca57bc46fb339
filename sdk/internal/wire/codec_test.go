package wire

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

func publishRequest(n, size int) *PublishRequest {
	req := &PublishRequest{Handle: 7}
	for i := range n {
		data := make([]byte, size)
		rand.Read(data)
		req.Items = append(req.Items, &PublishItem{Data: data, IdempotencyKey: fmt.Sprintf("%036d", i)})
	}
	return req
}

// Codec puts the bytes gRPC's proto codec would on the wire, under its
// name, and reads them back however the transport split them.
func TestCodecSameBytes(t *testing.T) {
	if Codec.Name() != "proto" {
		t.Fatalf("Name = %q, want gRPC's proto codec's", Codec.Name())
	}
	for _, n := range []int{0, 1, 64, 1000} {
		req := publishRequest(n, 1024)
		want, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Codec.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if b := got.Materialize(); !bytes.Equal(b, want) {
			t.Fatalf("%d items: marshalled %d bytes differ from proto.Marshal's %d", n, len(b), len(want))
		}
		got.Free()

		var split mem.BufferSlice // as HTTP/2 frames deliver it
		for rest := want; len(rest) > 0; {
			k := min(len(rest), 16<<10)
			split = append(split, mem.SliceBuffer(rest[:k]))
			rest = rest[k:]
		}
		var back PublishRequest
		if err := Codec.Unmarshal(split, &back); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&back, req) {
			t.Fatalf("%d items: unmarshalled message differs", n)
		}
	}
	if _, err := Codec.Marshal("not a message"); err == nil {
		t.Fatal("marshalled a string")
	}
}

// A batch of 64 envelopes of 1 KiB (about 68 KiB) takes a buffer of at
// most twice its size, not gRPC's default 1 MiB tier.
func TestCodecBufferFitsMessage(t *testing.T) {
	req := publishRequest(64, 1024)
	size := proto.Size(req)
	got, err := Codec.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Free()
	if len(got) != 1 {
		t.Fatalf("%d buffers, want 1", len(got))
	}
	if c := cap(got[0].ReadOnlyData()); c > 2*size {
		t.Fatalf("a %d-byte message took a buffer of %d bytes", size, c)
	}
	for _, n := range []int{size, 1 << 20, MaxMessageSize} {
		b := codecPool.Get(n)
		if cap(*b) < n || cap(*b) > 2*n {
			t.Fatalf("pool: %d bytes asked, buffer of %d", n, cap(*b))
		}
		codecPool.Put(b)
	}
}
