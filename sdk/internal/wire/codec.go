package wire

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// Codec is the gRPC codec both halves of the wire use (sdk/host's dial
// options, sdk's server options): gRPC's own proto codec, same name and same
// bytes, whose buffers come from a pool with a tier at every power of two
// up to MaxMessageSize.
//
// gRPC's default pool has tiers of 256 B, 4, 16 and 32 KiB and 1 MiB, and
// zeroes the whole buffer it hands out, so each message between 32 KiB and
// 1 MiB (a Publish batch of 64 envelopes of 1 KiB is about 68 KiB) took and
// cleared a 1 MiB buffer when it was marshalled and again when it was
// received. Here a buffer is at most twice the message.
//
// grpc marks the options that install it (ForceCodecV2,
// ForceServerCodecV2) experimental; TestCodecHostToPlainServer and
// TestCodecPlainClientToServer in sdk/host check after an upgrade that
// peers on gRPC's default codec still understand both halves.
var Codec encoding.CodecV2 = codec{}

// codecPool is Codec's buffer pool: 2^8 … 2^26 bytes (MaxMessageSize).
var codecPool = func() mem.BufferPool {
	var exps []uint8
	for e := uint8(8); 1<<e <= MaxMessageSize; e++ {
		exps = append(exps, e)
	}
	p, err := mem.NewBinaryTieredBufferPool(exps...)
	if err != nil {
		panic(err)
	}
	return p
}()

type codec struct{}

// Name is gRPC's proto codec's: nothing on the wire changes.
func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m := messageOf(v)
	if m == nil {
		return nil, fmt.Errorf("wire: cannot marshal %T, want a proto.Message", v)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // Size just ran
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := codecPool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		codecPool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, codecPool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m := messageOf(v)
	if m == nil {
		return fmt.Errorf("wire: cannot unmarshal into %T, want a proto.Message", v)
	}
	buf := data.MaterializeToBuffer(codecPool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// messageOf is v as a proto.Message, as gRPC's codec takes it (go-plugin's
// own services share the connection).
func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	case protoadapt.MessageV2:
		return v
	}
	return nil
}
