package store

import "crypto/sha256"

// hashOp names a roster op the way package circle does: SHA-256 of its bytes.
func hashOp(op []byte) []byte { s := sha256.Sum256(op); return s[:] }
