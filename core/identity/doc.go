// Package identity holds a device's keys: one ed25519 identity, which is also
// the device's libp2p peer ID, and signed X25519 box prekeys that others seal
// direct envelopes and join messages to.
//
// # Prekeys
//
// A prekey is an X25519 public key signed by the identity key. Its wire form
// (113 bytes) is
//
//	version (1 byte, 1) ‖ X25519 public key (32) ‖ created (8, Unix seconds, big endian)
//	‖ expires (8, Unix seconds) ‖ ed25519 signature (64)
//
// The signature covers "remora/v1/prekey" ‖ 0x00 ‖ owner peer ID bytes ‖ the
// first 49 bytes above, so a prekey cannot be presented as someone else's.
// The key ID is the first 8 bytes of SHA-256("remora/v1/prekey-id" ‖ public
// key); it is derived, never carried.
//
// A [Keyring] makes a new prekey every RotateEvery (default one week); a
// prekey expires RotateEvery after it was made (senders stop sealing to it
// once they learn its successor) and its private half is deleted Grace
// (default two weeks) after the later of its expiry and its replacement,
// long enough to open envelopes still waiting on slow channels or sealed by
// members that had not learned the new key yet.
//
// # Files
//
// A keyring lives in one directory (mode 0700) with two files, both written
// atomically with mode 0600: identity.key (PEM "REMORA IDENTITY KEY", the
// 32-byte ed25519 seed) and prekeys.json (each prekey and its private half).
// Load refuses a key file that group or others can read and says how to fix
// it. Backups are age files encrypted with a passphrase (scrypt).
package identity
