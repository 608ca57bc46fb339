package mastodon_test

import (
	"encoding/json"
	"net/http"
	"testing"

	gomasto "github.com/mattn/go-mastodon"

	"github.com/remora-p2p/remora/mastodon/mastodontest"
)

// getStatus fetches a status as the holder of token; a zero Status when
// it is not visible.
func getStatus(t *testing.T, srv *mastodontest.Server, token, id string) gomasto.Status {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/statuses/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st gomasto.Status
	if resp.StatusCode == http.StatusOK {
		json.NewDecoder(resp.Body).Decode(&st)
	}
	return st
}

func statusCode(t *testing.T, srv *mastodontest.Server, token, id string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/statuses/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
