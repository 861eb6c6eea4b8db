package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// TestVerifyConnPeer: a connection's verdict is reused for the same
// certificates, pool and roles while the clock is in its window; another
// role set, another pool, a time past the window, or a connection without
// a slot verify again; a refusal empties the slot.
func TestVerifyConnPeer(t *testing.T) {
	ca := mustCA(t, "cluster")
	cs, _ := peerState(t, ca, RoleOperator, "alice", time.Now(), 30*time.Minute)
	pool := ca.Pool()
	ctx := ConnContext(context.Background(), nil)
	now := time.Now()
	check := func(name string, ctx context.Context, pool *x509.CertPool, at time.Time, wantVerified bool, wantErr error, roles ...Role) {
		t.Helper()
		p, verified, err := VerifyConnPeer(ctx, cs, pool, at, roles...)
		if !errors.Is(err, wantErr) || verified != wantVerified {
			t.Fatalf("%s: peer %+v, verified %v, err %v; want verified %v, err %v", name, p, verified, err, wantVerified, wantErr)
		}
		if err == nil && p.ID != "alice" {
			t.Fatalf("%s: peer %+v", name, p)
		}
	}
	check("first request", ctx, pool, now, true, nil, RoleOperator)
	check("second request", ctx, pool, now.Add(time.Minute), false, nil, RoleOperator)
	check("other roles", ctx, pool, now, true, ErrUnauthenticated, RoleBackend)
	check("after the refusal", ctx, pool, now, true, nil, RoleOperator)
	check("another pool", ctx, mustCA(t, "other").Pool(), now, true, ErrUnauthenticated, RoleOperator)
	check("the slot emptied", ctx, pool, now, true, nil, RoleOperator)
	check("expired on the open connection", ctx, pool, now.Add(time.Hour), true, ErrUnauthenticated, RoleOperator)
	check("no slot", context.Background(), pool, now, true, nil, RoleOperator)
	check("no slot again", context.Background(), pool, now, true, nil, RoleOperator)
}
