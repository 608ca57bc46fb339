// Package dir is the remora adapter for a shared folder: any folder that
// friends already keep in sync (Syncthing, Nextcloud, NFS, a USB stick)
// becomes a channel. It is the SDK's worked example; docs/adapter-guide.md
// walks through it.
//
// # Layout
//
// The folder holds only files that sync tools copy as they are:
//
//	.folder-id                the folder's random identity (hex; an earlier
//	                          version's .remora-folder is adopted)
//	board/<key>               one file per board key, the latest value
//	log/<YYYYMMDDHH>/<key>    one file per envelope, named by its
//	                          idempotency key, in the UTC hour bucket
//	                          in which it was published
//
// Every file is written atomically: a temporary file (".tmp-…") in
// the same folder, fsync, rename, fsync of the folder. Readers ignore
// temporary files (ours and the sync tools': ".syncthing.*.tmp",
// "~syncthing~*", "*.part", ".~lock*", …) and any other foreign file, and
// count them in Health (ignored_temp, ignored_foreign): log/'s at every
// scan, board/'s by name only at a full rescan (and at a Get of the whole
// board), since the daemon reads the board by key. Because a file name is its idempotency key, a repeated
// key can never make a second item: idempotency is strong.
//
// # Cursor
//
// Sync tools deliver files out of order: a friend's laptop that was
// offline for three days brings files in buckets three days old, and names
// within a bucket are random keys. No (bucket, name) high-water mark can
// order that. Instead each channel keeps a local index in its state dir
// that gives every file a sequence number when the channel first sees it
// (like an IMAP UID assigned by the reader). The cursor is (index ID,
// sequence): 1 version byte, the 16-byte index ID and a uvarint, so it stays
// about 20 bytes however many files the folder holds, and resuming
// delivers exactly the files indexed after it, including late ones in old
// buckets.
//
// The index ID changes when the index starts over: its state dir was lost,
// or the folder was replaced or wiped (its .folder-id identity changed).
// A cursor of another index is then sdk.ErrCursorInvalid, and the host
// resubscribes from the start and dedupes.
//
// # Watching, polling and pruning
//
// Subscribe scans when the folder changes: the channel watches log/ and
// its bucket folders through the operating system (inotify on Linux, via
// fsnotify), gathers a burst of events for 20ms, and scans once. A watch
// only says when to scan; the slow rescan (rescan_interval, default 1m)
// still runs as a safety net, so an idle channel costs one scan a minute.
// A folder on a network or FUSE filesystem (whose remote changes no local
// watch sees) is polled at poll_interval instead, unless "watch" is "on";
// so is any folder with "watch": "off", or when the watch fails (out of
// inotify watches, say). Health's counter "watching" says which. A scan lists the hour
// buckets within retention; a bucket whose directory modification time is
// unchanged and older than a few seconds is not re-read, except on a full
// rescan once a minute (for filesystems with coarse or unreliable
// directory times). Buckets older than retention are removed; Delete
// removes named items.
//
// # Hostile content
//
// Anyone who can write to the folder (a member, a compromised sync peer)
// can put anything in it, so dir reads nothing unbounded. It reaches into
// the folder only through an os.Root of log/ and board/ (which must be
// folders, not links): no path and no link leads out of the folder, for
// reads, writes, renames and pruning alike. An item is read only if both
// lstat and the type of the opened descriptor say it is a regular file;
// it is opened non-blocking (a FIFO cannot stall the reader) and read
// through a limit of max_payload + 1 bytes (a file that grows while read
// costs no more). A file skipped for what it is (too large, a link, FIFO,
// device or socket, unreadable) is counted in Health (ignored_oversize,
// ignored_special, ignored_unreadable) and logged once, and the cursor
// moves past it with a Skip delivery, so a restart does not read it again.
// One board Get answers at most 16 MiB (or one max_payload). The index
// keeps one entry per item-named file within retention, junk included.
package dir
