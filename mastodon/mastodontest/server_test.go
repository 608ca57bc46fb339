package mastodontest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func call(t *testing.T, s *Server, method, path, token string, form url.Values, hdr map[string]string) (*http.Response, []map[string]any) {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, s.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	json.NewDecoder(resp.Body).Decode(&raw)
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		var one map[string]any
		json.Unmarshal(raw, &one)
		list = []map[string]any{one}
	}
	return resp, list
}

func TestCountCharacters(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{
		{"hello", 5},
		{"héllo wörld", 11},
		{"@bob hi", 7},
		{"@bob@far.example hi", 7},
		{"see https://example.com/a/very/long/path/indeed ok", 4 + 23 + 3},
		{"email bob@far.example", 21}, // not a mention: no @ before
	} {
		if got := CountCharacters(tc.text); got != tc.want {
			t.Errorf("CountCharacters(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
}

func TestPaginate(t *testing.T) {
	ids := []string{"10", "20", "30", "40", "50"}
	for _, tc := range []struct {
		q    string
		want string
	}{
		{"", "50,40,30,20,10"},
		{"limit=2", "50,40"},
		{"max_id=40", "30,20,10"},
		{"since_id=20&limit=2", "50,40"}, // newest above since_id
		{"min_id=20&limit=2", "40,30"},   // just above min_id, newest first
		{"min_id=0&limit=2", "20,10"},
		{"max_id=50&min_id=10", "40,30,20"},
	} {
		q, _ := url.ParseQuery(tc.q)
		got, err := paginate(ids, q, 40, 80)
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("%s: got %v %v, want %s", tc.q, got, err, tc.want)
		}
	}
	if _, err := paginate(ids, url.Values{"max_id": {"x"}}, 40, 80); err == nil {
		t.Error("a malformed max_id was accepted")
	}
}

func TestVisibilityIdempotencyAndLink(t *testing.T) {
	s := New(Options{})
	t.Cleanup(s.Close)
	alice, bob, carol := s.AddAccount("alice"), s.AddAccount("bob"), s.AddAccount("carol")
	post := func(text, key string) (int, string) {
		resp, st := call(t, s, "POST", "/api/v1/statuses", alice.Token, url.Values{"status": {text}, "visibility": {"direct"}}, map[string]string{"Idempotency-Key": key})
		id, _ := st[0]["id"].(string)
		return resp.StatusCode, id
	}
	_, id1 := post("@bob one", "k1")
	if _, again := post("@bob one", "k1"); again != id1 {
		t.Errorf("same key within the hour: %s, then %s", id1, again)
	}
	s.Advance(61 * time.Minute)
	if _, again := post("@bob one", "k1"); again == id1 {
		t.Error("same key after the hour returned the old status")
	}
	if code, _ := post("@bob "+strings.Repeat("x", 496), ""); code != http.StatusUnprocessableEntity {
		t.Errorf("501 characters: %d, want 422", code)
	}
	if code, _ := post("@bob@social.example "+strings.Repeat("x", 495), ""); code != http.StatusOK {
		t.Errorf("500 characters counting the mention as @bob: %d, want 200", code)
	}
	if resp, _ := call(t, s, "GET", "/api/v1/statuses/"+id1, carol.Token, nil, nil); resp.StatusCode != 404 {
		t.Errorf("carol sees a direct status to bob: %d", resp.StatusCode)
	}
	if resp, _ := call(t, s, "GET", "/api/v1/statuses/"+id1, bob.Token, nil, nil); resp.StatusCode != 200 {
		t.Errorf("bob cannot see a direct status to him: %d", resp.StatusCode)
	}
	resp, ns := call(t, s, "GET", "/api/v1/notifications?types[]=mention&limit=2", bob.Token, nil, nil)
	if len(ns) != 2 || !strings.Contains(resp.Header.Get("Link"), `rel="next"`) || !strings.Contains(resp.Header.Get("Link"), "min_id=") {
		t.Errorf("notifications page: %d items, Link %q", len(ns), resp.Header.Get("Link"))
	}
	if resp.Header.Get("X-RateLimit-Limit") != "300" || resp.Header.Get("X-RateLimit-Remaining") == "" {
		t.Errorf("rate-limit headers: %v", resp.Header)
	}
	// A late federated status sorts below, its notification above.
	late := s.Federate("eve@far.example", "@bob late", "direct", time.Now().Add(-time.Hour))
	if a, _ := strconv.ParseInt(late, 10, 64); a > mustInt(id1) {
		t.Errorf("federated status created an hour ago has ID %s above %s", late, id1)
	}
	_, ns = call(t, s, "GET", "/api/v1/notifications?limit=1", bob.Token, nil, nil)
	if st, _ := ns[0]["status"].(map[string]any); st["id"] != late {
		t.Errorf("newest notification is for %v, want the late status %s", st["id"], late)
	}
	// Deleting a status removes its notifications.
	s.DeleteStatus(late)
	_, ns = call(t, s, "GET", "/api/v1/notifications?limit=1", bob.Token, nil, nil)
	if st, _ := ns[0]["status"].(map[string]any); st["id"] == late {
		t.Error("a deleted status's notification remains")
	}
	if resp, _ := call(t, s, "GET", "/api/v1/notifications", "bad", nil, nil); resp.StatusCode != 401 {
		t.Errorf("bad token: %d", resp.StatusCode)
	}
}

func mustInt(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

func TestStreaming(t *testing.T) {
	s := New(Options{})
	t.Cleanup(s.Close)
	alice, bob := s.AddAccount("alice"), s.AddAccount("bob")
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/api/v1/streaming?stream=user"
	conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + bob.Token}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitStreams(t, s, 1)
	call(t, s, "POST", "/api/v1/statuses", alice.Token, url.Values{"status": {"@bob hi"}, "visibility": {"direct"}}, nil)
	var ev struct {
		Event   string   `json:"event"`
		Stream  []string `json:"stream"`
		Payload string   `json:"payload"`
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := conn.ReadJSON(&ev); err != nil {
		t.Fatal(err)
	}
	var n struct {
		Type   string `json:"type"`
		Status struct {
			Content string `json:"content"`
		} `json:"status"`
	}
	json.Unmarshal([]byte(ev.Payload), &n)
	if ev.Event != "notification" || n.Type != "mention" || !strings.Contains(n.Status.Content, `class="u-url mention"`) {
		t.Errorf("event %+v, notification %+v", ev, n)
	}
	s.DropStreams()
	if _, _, err := conn.ReadMessage(); err == nil {
		t.Error("stream still open after DropStreams")
	}
	if _, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer bad"}}); err == nil {
		t.Error("streaming accepted a bad token")
	}
}

func waitStreams(t *testing.T, s *Server, n int) {
	t.Helper()
	for range 100 {
		if s.Streams() == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d streams, want %d", s.Streams(), n)
}
