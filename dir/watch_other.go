//go:build !linux

package dir

// remoteFS reports whether path is on a network filesystem; only Linux
// tells, elsewhere the folder is watched unless "watch" is "off".
func remoteFS(path string) (string, bool) { return "", false }
