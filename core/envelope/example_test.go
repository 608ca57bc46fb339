package envelope_test

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
)

// oneCircle is the smallest envelope.Keys: one epoch, one sender.
type oneCircle struct {
	epoch  *envelope.EpochKeys
	sender envelope.Member
	msgKey []byte
}

func (k *oneCircle) Epochs() []*envelope.EpochKeys { return []*envelope.EpochKeys{k.epoch} }
func (k *oneCircle) Members(envelope.CircleID, envelope.Epoch) []envelope.Member {
	return []envelope.Member{k.sender}
}
func (k *oneCircle) MessageKeys(envelope.CircleID, envelope.Epoch, peer.ID) ([][]byte, bool) {
	return [][]byte{k.msgKey}, true
}
func (k *oneCircle) BoxKeys() []hpke.PrivateKey { return nil }

func Example() {
	// What package identity and package circle would provide.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	lp, _ := crypto.UnmarshalEd25519PublicKey(pub)
	alice, _ := peer.IDFromPublicKey(lp)
	var circle envelope.CircleID
	var epoch envelope.Epoch
	secret, msgKey := make([]byte, 32), make([]byte, 32)
	rand.Read(secret)
	rand.Read(msgKey)
	ek, _ := envelope.NewEpochKeys(circle, epoch, secret)

	// Alice posts to a Mastodon-sized channel: 500 characters, armored.
	armor := envelope.NewArmor("mastodon:@circle@example.social")
	route := envelope.Route{Channel: "mastodon:@circle@example.social", MaxSize: armor.MaxEnvelope(500)}
	now := time.Now()
	sealed, err := (&envelope.Sealer{}).Broadcast(ek, envelope.Signer{ID: alice, Key: priv}, msgKey, envelope.Draft{
		Kind:   envelope.KindChat,
		Expiry: now.Add(7 * 24 * time.Hour),
		Body:   []byte("See you at the station at eight. Bring the map, the good one, not the one with the coffee stain. I will be by the clock under the big board. Call if you are late, or text the circle: I will check on the way."),
	}, route)
	if err != nil {
		panic(err)
	}
	var posts []string
	for _, env := range sealed.Envelopes {
		posts = append(posts, armor.Encode(env))
	}
	fmt.Println("posts:", len(posts), "longest fits:", len(posts[0]) <= 500)

	// Bob reads the posts back, in any order.
	keys := &oneCircle{epoch: ek, sender: envelope.Member{ID: alice, Key: pub}, msgKey: msgKey}
	o := envelope.NewOpener(keys, "bob", envelope.OpenOptions{})
	for i := len(posts) - 1; i >= 0; i-- {
		for _, env := range armor.Find(posts[i]) {
			m, err := o.Open(route.Channel, env)
			switch {
			case err == nil:
				fmt.Printf("from alice: %.31s…\n", m.Body)
			case !errors.Is(err, envelope.ErrPending):
				fmt.Println("dropped:", err)
			}
		}
	}
	// Output:
	// posts: 2 longest fits: true
	// from alice: See you at the station at eight…
}
