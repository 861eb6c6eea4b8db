package rest

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/policy"
)

// The API's parsers of untrusted bytes, fuzzed (SECURITY 23): the create
// body (strict JSON with its depth bound, the id, the required fields, the
// note, the expiry, the initiation's JSON, then the amount and address
// grammars), the list's query string, the cursor. Properties: no panic; a
// refusal is the API's error with a documented 4xx code; what is accepted
// is valid. Seeds: testdata/fuzz/<target>; `make fuzz-api` runs them
// long.

// wantRefusal fails unless err is an API error whose code is documented
// with its status, a 4xx.
func wantRefusal(t *testing.T, err error) {
	t.Helper()
	var e *apiError
	if !errors.As(err, &e) {
		t.Fatalf("not an API error: %v", err)
	}
	if st, ok := Codes()[e.code]; !ok || st != e.status || e.status < 400 || e.status >= 500 {
		t.Fatalf("refusal %d %q is not a documented 4xx: %v", e.status, e.code, err)
	}
}

var fuzzNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func FuzzParseCreate(f *testing.F) {
	f.Add([]byte(`{"id":"wd-1","wallet":"hot","asset":"ETH","to":"0x00000000000000000000000000000000000000aA","amount":"1.5","initiation":{"cluster_id":"c","request_id":"wd-1","payload_hash":"00","decision":"initiate","expiry":"2027-01-01T00:00:00Z","device_id":"d","signature":"AA=="}}`), "wd-1", true)
	f.Add([]byte(`{"id":"x","note":"a\u202eb"}`), "", false)
	f.Fuzz(func(t *testing.T, body []byte, key string, hasKey bool) {
		var keys []string
		if hasKey {
			keys = []string{key}
		}
		in, err := parseCreate(body, keys, fuzzNow)
		if err != nil {
			wantRefusal(t, err)
			return
		}
		if !validID(in.ID) || in.Initiation == nil || in.Wallet == "" || in.Asset == "" || in.To == "" || in.Amount == "" {
			t.Fatalf("accepted an incomplete create: %+v", in)
		}
		if policy.ValidNote(in.Note) != nil || (in.ExpiresAt != nil && !in.ExpiresAt.After(fuzzNow)) || (hasKey && key != in.ID) {
			t.Fatalf("accepted an invalid create: %+v (key %q)", in, key)
		}
		if checkDepth(body) != nil {
			t.Fatal("accepted a body nested too deep")
		}
		// The grammars checkCreate applies next.
		for _, d := range []int{0, 6, 18} {
			if a, err := amount.ParseUnits(in.Amount, d); err != nil {
				wantRefusal(t, amountError(err))
			} else if a.Format(d) == "" {
				t.Fatalf("amount %q parsed to %v", in.Amount, a)
			}
		}
		for _, cn := range [][2]string{{"eth", "devnet"}, {"btc", "regtest"}, {"btc", "mainnet"}} {
			if err := canonicalAddress(cn[0], cn[1], in.To); err != nil {
				wantRefusal(t, err)
			}
		}
	})
}

func FuzzListQuery(f *testing.F) {
	f.Add("status=pending_approval&wallet=hot&limit=10")
	f.Add("limit=0&limit=1")
	f.Add("cursor=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseListQuery(raw)
		if err != nil {
			wantRefusal(t, err)
			if toError(err).status != http.StatusBadRequest {
				t.Fatalf("a query refused with %v", err)
			}
			return
		}
		if q.limit < 1 || q.limit > MaxLimit || (q.status != "" && !slices.Contains(Statuses(), q.status)) {
			t.Fatalf("accepted %q as %+v", raw, q)
		}
	})
}

func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor(&ledger.Request{RequestCreate: ledger.RequestCreate{ID: "wd-1"}, CreatedIdx: 42}), uint64(7), "wd-2")
	f.Add("djEuMS4", uint64(0), "")
	f.Fuzz(func(t *testing.T, s string, idx uint64, id string) {
		if i, d, err := decodeCursor(s); err != nil {
			wantRefusal(t, err)
		} else if i2, d2, err := decodeCursor(encodeCursor(cursorAt(i, d))); err != nil || i2 != i || d2 != d {
			t.Fatalf("cursor %q: (%d, %q) re-encodes to (%d, %q), %v", s, i, d, i2, d2, err)
		}
		// Every cursor the API hands out decodes to its position.
		if validID(id) {
			if i, d, err := decodeCursor(encodeCursor(cursorAt(idx, id))); err != nil || i != idx || d != id {
				t.Fatalf("(%d, %q) decodes to (%d, %q), %v", idx, id, i, d, err)
			}
		}
	})
}

func cursorAt(idx uint64, id string) *ledger.Request {
	return &ledger.Request{RequestCreate: ledger.RequestCreate{ID: id}, CreatedIdx: idx}
}
