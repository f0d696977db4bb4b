// Command go-peer fetches client-credentials tokens with Go's
// golang.org/x/oauth2/clientcredentials, as a Go service would, pointed at
// the proxy's token URL. Used by crates/cli/tests/peers.rs.
//
// Each call prints one JSON line: {"ok":true,"access_token":...} for a
// token, or {"ok":false,"error_class":"*oauth2.RetrieveError","status":400,
// "error":"invalid_client"} for the error the library returns. Any other
// failure goes to stderr with exit status 1.
//
// It builds offline against Debian's golang-golang-x-oauth2-dev, in GOPATH
// mode (see peers/install):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o go-peer ./peers/go
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

type result struct {
	OK          bool   `json:"ok"`
	AccessToken string `json:"access_token,omitempty"`
	TokenType   string `json:"token_type,omitempty"`
	ExpiresIn   int64  `json:"expires_in,omitempty"`
	ErrorClass  string `json:"error_class,omitempty"`
	Status      int    `json:"status,omitempty"`
	Error       string `json:"error,omitempty"`
}

func main() {
	url := flag.String("url", "", "token URL")
	clientID := flag.String("client-id", "", "client id")
	secret := flag.String("secret", "", "client secret")
	auth := flag.String("auth", "basic", "basic (AuthStyleInHeader) or post (AuthStyleInParams)")
	scope := flag.String("scope", "", "space-separated scopes")
	calls := flag.Int("calls", 1, "how many tokens to fetch")
	flag.Parse()

	style := oauth2.AuthStyleInHeader
	switch *auth {
	case "basic":
	case "post":
		style = oauth2.AuthStyleInParams
	default:
		fail(fmt.Errorf("unknown --auth %q", *auth))
	}
	config := clientcredentials.Config{
		ClientID:     *clientID,
		ClientSecret: *secret,
		TokenURL:     *url,
		Scopes:       strings.Fields(*scope),
		AuthStyle:    style,
	}
	out := json.NewEncoder(os.Stdout)
	for i := 0; i < *calls; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		token, err := config.Token(ctx)
		cancel()
		var res result
		var retrieve *oauth2.RetrieveError
		switch {
		case err == nil:
			res = result{OK: true, AccessToken: token.AccessToken, TokenType: token.TokenType}
			if !token.Expiry.IsZero() {
				res.ExpiresIn = int64(time.Until(token.Expiry).Round(time.Second) / time.Second)
			}
		case errors.As(err, &retrieve):
			// x/oauth2 before v0.8 has no RetrieveError.ErrorCode: read the
			// RFC 6749 error code from the body it kept.
			var body struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(retrieve.Body, &body)
			res = result{
				ErrorClass: fmt.Sprintf("%T", retrieve),
				Status:     retrieve.Response.StatusCode,
				Error:      body.Error,
			}
		default:
			fail(err)
		}
		if err := out.Encode(res); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-peer:", err)
	os.Exit(1)
}
