package sdk

// MaxKeyLen is the longest idempotency or board key.
const MaxKeyLen = 64

// ValidKey reports whether s is a valid idempotency key (PublishItem) or
// board key (PutRequest, GetRequest): 1 to 64 characters of [A-Za-z0-9_-],
// the base64url alphabet core draws its keys from. Keys that pass are safe
// as file names, URL path segments, Message-ID local parts and Matrix state
// keys; an adapter rejects any other key with CodeInvalidArgument for that
// item alone, before it reaches the service (a key such as "../x" must
// never become a path).
func ValidKey(s string) bool {
	if len(s) == 0 || len(s) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// CheckKey returns nil for a valid key, else a CodeInvalidArgument error
// naming what the key is for ("idempotency key", "board key").
func CheckKey(what, s string) error {
	if ValidKey(s) {
		return nil
	}
	shown := s
	if len(shown) > 80 {
		shown = shown[:80] + "…"
	}
	return Errorf(CodeInvalidArgument, "%s %q: want 1 to %d characters of [A-Za-z0-9_-]", what, shown, MaxKeyLen)
}
