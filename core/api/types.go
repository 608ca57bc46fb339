package api

import (
	"context"
	"time"
)

// Backend is what the daemon provides; core/node implements it.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Send(ctx context.Context, req SendRequest) (SendResult, error)
	// Messages returns inbox entries with Seq > after, at most limit. A
	// negative after means "after the acked cursor".
	Messages(ctx context.Context, after int64, limit int) ([]Message, error)
	// WaitMessages blocks until an entry with Seq > after exists or ctx ends.
	WaitMessages(ctx context.Context, after int64) error
	Ack(ctx context.Context, seq int64) error
	Peers(ctx context.Context) ([]Peer, error)
	Channels(ctx context.Context) ([]Channel, error)
	// Boxes reports each bootstrap box (docs/discovery.md).
	Boxes(ctx context.Context) ([]Box, error)
	// RelayDials reports this node's reservation outcomes on volunteer
	// relays of the relay list (for its curation).
	RelayDials(ctx context.Context) ([]RelayDial, error)
	Events(ctx context.Context, after int64) ([]Event, error)
	WaitEvents(ctx context.Context, after int64) error
	CreateCircle(ctx context.Context, req CreateCircleRequest) (Circle, error)
	Invite(ctx context.Context, req InviteRequest) (InviteResult, error)
	// Join sends a join request and returns at once: the join is pending
	// until an admin of the circle approves it (JoinStatus.SafetyCode is
	// what both sides compare). The daemon keeps waiting for the welcome.
	Join(ctx context.Context, req JoinRequest) (JoinStatus, error)
	// JoinStatus reports a join of this device by its ID, waiting up to
	// wait while it is pending.
	JoinStatus(ctx context.Context, id string, wait time.Duration) (JoinStatus, error)
	Membership
}

// Membership is the approval gate and the roster, for admins and members.
type Membership interface {
	// Pending lists the join requests waiting for approval (circle "": all).
	Pending(ctx context.Context, circle string) ([]PendingJoin, error)
	// Approve admits a pending device (by display name or peer ID).
	Approve(ctx context.Context, req MemberRequest) (Member, error)
	// Deny refuses a pending device; its invite can no longer be used.
	Deny(ctx context.Context, req MemberRequest) error
	Members(ctx context.Context, circle string) ([]Member, error)
	// RemoveMember removes a device from the roster (admins).
	RemoveMember(ctx context.Context, req MemberRequest) error
	// SetRole makes a member an admin or a plain member (admins).
	SetRole(ctx context.Context, req MemberRequest) (Member, error)
	// Leave removes this device from a circle.
	Leave(ctx context.Context, req MemberRequest) error
}

// Status describes the daemon.
type Status struct {
	PeerID      string    `json:"peer_id"`
	Version     string    `json:"version"`
	Ready       bool      `json:"ready"`
	Started     time.Time `json:"started"`
	ListenAddrs []string  `json:"listen_addrs"`
	// ListenPorts says whether the listen ports are the last run's (kept,
	// so friends' cached addresses still work), new, or set in the config.
	ListenPorts  string   `json:"listen_ports,omitempty"`
	Reachability string   `json:"reachability"` // public|private|unknown
	NAT          string   `json:"nat"`          // public|cone|symmetric|unknown
	Circles      []Circle `json:"circles"`
	Fingerprint  string   `json:"fingerprint"`
	// Mailbox is what this device keeps for friends and they for it.
	Mailbox *Mailbox `json:"mailbox,omitempty"`
	// Held is what this device holds from others that cannot open yet.
	Held *Held `json:"held,omitempty"`
	// NATMapping and NATFiltering describe the NAT in front of this device
	// as AutoNAT and observers show it (`remora doctor`).
	NATMapping   string `json:"nat_mapping,omitempty"`   // none|endpoint-independent|endpoint-dependent|unknown
	NATFiltering string `json:"nat_filtering,omitempty"` // open|filtering|unknown
	// Relay is friend relaying: ours and the ones we use.
	Relay *RelayStatus `json:"relay,omitempty"`
	// Outbox is how many sent messages still wait for an ack from some
	// recipient.
	Outbox int `json:"outbox"`
	// Birthday counts birthday-paradox probing runs this node started as
	// the symmetric side (core/birthday) and how many made a direct path.
	Birthday *Birthday `json:"birthday,omitempty"`
}

// Birthday is what birthday-paradox probing did since the node started.
type Birthday struct {
	Attempts int `json:"attempts"`
	Direct   int `json:"direct"`
}

// RelayStatus is who relays for whom, as `remora doctor` shows it.
type RelayStatus struct {
	// Enabled: this device may relay (the user consented, relay = "yes").
	Enabled bool `json:"enabled"`
	// Offering: it offers to relay now (publicly reachable, up long enough).
	Offering bool `json:"offering"`
	// UpSince is the start of its current stretch of uptime (persisted
	// across restarts), which promotion waits on.
	UpSince time.Time `json:"up_since,omitempty"`
	// Serving are the members holding a slot on this device's relay.
	Serving []string `json:"serving,omitempty"`
	// Using are the relays this device holds a slot on (friends first).
	Using []string `json:"using,omitempty"`
}

// Held is the envelopes a device keeps because they cannot open yet (the
// sender's key has not arrived, or the other fragments of the message),
// within byte quotas, and what it refused or dropped as duplicates.
type Held struct {
	Items int   `json:"items"`
	Bytes int64 `json:"bytes"`
	// Quotas: all senders together, and per sender and kind.
	QuotaBytes     int64 `json:"quota_bytes"`
	PerSenderBytes int64 `json:"per_sender_bytes"`
	// Refused since the daemon started: over a held quota; join parts
	// over their byte bounds; copies of messages already handled.
	DroppedQuota      int64 `json:"dropped_quota"`
	DroppedJoinParts  int64 `json:"dropped_join_parts"`
	DuplicatesRemoved int64 `json:"duplicates_removed"`
}

// Mailbox is friends' mailboxes as `remora doctor` shows them.
type Mailbox struct {
	Offered bool   `json:"offered"`
	Quota   int64  `json:"quota"`
	Expiry  string `json:"expiry"`
	// Held for others: envelopes, bytes, distinct recipients.
	HeldItems      int   `json:"held_items"`
	HeldBytes      int64 `json:"held_bytes"`
	HeldRecipients int   `json:"held_recipients"`
	// Holders are the friends keeping our envelopes for offline members,
	// and those that delivered envelopes kept for us.
	Holders []MailboxHolder `json:"holders,omitempty"`
	// Wake-ups: devices registered with us, and what we sent them.
	WakeRegistered int    `json:"wake_registered"`
	WakePushed     int64  `json:"wake_pushed"`
	WakeChannel    int64  `json:"wake_channel"`
	WakeLimited    int64  `json:"wake_limited"`
	WakeFailed     int64  `json:"wake_failed"`
	WakeError      string `json:"wake_error,omitempty"`
	// WakeOwn: this device registers with friends for wake-ups.
	WakeOwn bool `json:"wake_own"`
}

// MailboxHolder is one friend keeping envelopes for us.
type MailboxHolder struct {
	PeerID string `json:"peer_id"`
	// Items and Bytes are our envelopes it keeps for members not reached yet.
	Items int   `json:"items"`
	Bytes int64 `json:"bytes"`
	// Delivered counts envelopes it kept for this device and handed over.
	Delivered int64 `json:"delivered"`
}

// Circle is a circle this node is a member of.
type Circle struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Members []Member `json:"members,omitempty"`
	Epoch   string   `json:"epoch,omitempty"`
	// Roster is the health of the roster log, for `remora doctor`.
	Roster *RosterHealth `json:"roster,omitempty"`
}

// Member is one device in a circle's roster. Each device is a member of
// its own; a person with two devices is two members.
type Member struct {
	PeerID      string    `json:"peer_id"`
	Name        string    `json:"name"`
	Role        string    `json:"role"` // admin|member
	Circle      string    `json:"circle,omitempty"`
	Self        bool      `json:"self,omitempty"` // this device
	AddedBy     string    `json:"added_by,omitempty"`
	AddedByName string    `json:"added_by_name,omitempty"`
	Added       time.Time `json:"added,omitzero"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
}

// PendingJoin is a join request waiting for an admin's approval.
type PendingJoin struct {
	Circle     string    `json:"circle"`
	CircleName string    `json:"circle_name"`
	Name       string    `json:"name"` // the name the joiner gave
	PeerID     string    `json:"peer_id"`
	Channel    string    `json:"channel"` // where the request arrived
	Since      time.Time `json:"since"`
	Expires    time.Time `json:"expires"`
	// SafetyCode is what the joiner's `remora join` shows: compare them
	// (read it aloud) before approving.
	SafetyCode string `json:"safety_code"`
}

// MemberRequest names a device of a circle: by display name or peer ID.
type MemberRequest struct {
	Circle string `json:"circle,omitempty"`
	Who    string `json:"who,omitempty"`
	Role   string `json:"role,omitempty"` // SetRole: admin|member
}

// JoinStatus is where a join of this device stands.
type JoinStatus struct {
	ID         string    `json:"id"`    // the invite's ID
	State      string    `json:"state"` // pending|joined|refused
	SafetyCode string    `json:"safety_code"`
	Inviter    string    `json:"inviter"`
	Channel    string    `json:"channel"`
	Expires    time.Time `json:"expires"` // the daemon waits for the welcome until then
	Circle     *Circle   `json:"circle,omitempty"`
	Error      string    `json:"error,omitempty"` // refused: why
}

// SendRequest sends a message to a circle: to everyone (To empty, one
// broadcast envelope) or to some members (direct envelopes).
type SendRequest struct {
	Circle string   `json:"circle"`
	To     []string `json:"to,omitempty"`
	Text   string   `json:"text,omitempty"`
	Body   []byte   `json:"body,omitempty"` // base64 in JSON
	// TTL bounds delivery; undeliverable after it (default 7 days).
	TTL Duration `json:"ttl,omitempty"`
}

// SendResult is returned once the message is durable in the outbox.
type SendResult struct {
	ID       string    `json:"id"`
	Accepted time.Time `json:"accepted"`
}

// Message is one inbox entry.
type Message struct {
	Seq      int64     `json:"seq"`
	ID       string    `json:"id"`
	Circle   string    `json:"circle"`
	From     string    `json:"from"`
	FromName string    `json:"from_name,omitempty"`
	Direct   bool      `json:"direct"`
	Sent     time.Time `json:"sent"`
	Received time.Time `json:"received"`
	// SenderSeq orders messages of one sender; there is no order across senders.
	SenderSeq uint64 `json:"sender_seq"`
	Path      string `json:"path"` // how it arrived: direct|relayed|lan|channel:NAME
	Text      string `json:"text,omitempty"`
	Body      []byte `json:"body,omitempty"`
}

// Peer is one circle member as this node sees it.
type Peer struct {
	PeerID   string    `json:"peer_id"`
	Name     string    `json:"name"`
	Circles  []string  `json:"circles"`
	Path     string    `json:"path"` // lan|direct|punched|relayed|channel|none
	LastSeen time.Time `json:"last_seen"`
	FoundBy  string    `json:"found_by"` // the first box that reported it: mdns|cache|pex|channel:NAME|web|dns|relaylist
	// Via is the box whose address made the path in use ("" with no live
	// path; "inbound" when the peer dialed us with an address we never had).
	Via string `json:"via,omitempty"`
	// Cached is how many of its addresses the peer cache holds.
	Cached int      `json:"cached"`
	Addrs  []string `json:"addrs,omitempty"`
	NAT    string   `json:"nat,omitempty"`
	// Presence is when the newest presence record held for the peer was
	// issued (zero: none yet); its source is FoundBy's kind of box.
	Presence time.Time `json:"presence,omitzero"`
}

// Channel is one configured channel.
type Channel struct {
	Name     string           `json:"name"`
	Adapter  string           `json:"adapter"`
	State    string           `json:"state"` // ok|degraded|down
	Message  string           `json:"message,omitempty"`
	Advice   string           `json:"advice,omitempty"`
	Board    bool             `json:"board"`
	Push     bool             `json:"push"`
	Counters map[string]int64 `json:"counters,omitempty"`
}

// Event is something the app should know about.
type Event struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // undeliverable|needs_user_action|peer_connected|...
	Message string    `json:"message"`
	Ref     string    `json:"ref,omitempty"` // message ID, channel name, peer ID
}

type CreateCircleRequest struct {
	Name string `json:"name"`
}

type InviteRequest struct {
	Circle string   `json:"circle"`
	Hint   string   `json:"hint,omitempty"` // the channel to rendezvous on (default: the first)
	TTL    Duration `json:"ttl,omitempty"`
	// InPerson approves the invite's single use in advance: only for an
	// invite handed over face to face (QR), never one sent through a service.
	InPerson bool `json:"in_person,omitempty"`
}

type InviteResult struct {
	Invite   string    `json:"invite"`
	QR       string    `json:"qr,omitempty"`
	Expires  time.Time `json:"expires"`
	InPerson bool      `json:"in_person,omitempty"`
}

type JoinRequest struct {
	Invite string `json:"invite"`
	Name   string `json:"name,omitempty"`
}

// Duration is a time.Duration written as "90s" in JSON.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Error is the JSON error body; it also travels back to Go clients.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	Advice  string `json:"advice,omitempty"`
}

func (e *Error) Error() string {
	if e.Advice != "" {
		return e.Message + " (" + e.Advice + ")"
	}
	return e.Message
}
