package dir

import "golang.org/x/sys/unix"

// remoteFS reports whether path is on a filesystem whose changes made
// elsewhere no local watch sees: network filesystems and FUSE (which many
// cloud-drive clients use).
func remoteFS(path string) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "", false
	}
	switch uint32(st.Type) {
	case unix.NFS_SUPER_MAGIC:
		return "NFS", true
	case unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC:
		return "SMB/CIFS", true
	case unix.FUSE_SUPER_MAGIC:
		return "FUSE", true
	case unix.V9FS_MAGIC:
		return "9P", true
	case unix.CEPH_SUPER_MAGIC:
		return "Ceph", true
	case unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC:
		return "AFS", true
	case unix.CODA_SUPER_MAGIC:
		return "Coda", true
	}
	return "", false
}
