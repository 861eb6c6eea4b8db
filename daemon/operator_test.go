package daemon_test

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// TestOperatorAPI: the operator API of a real four-node cluster through a
// follower, every request and answer checked against api/openapi.yaml.
// Operators review requests with their human description and answer them
// with approvals signed on their own devices (the server never signs);
// every bad answer (forged, expired, another payload, another operator's
// device, the initiator's, a second answer, an unknown request, a backend
// certificate) is refused with its code and nothing recorded. Governance
// changes collect approvals over time in the ledger's staging area: an
// allowlist add by two operators, a lock by one, an unlock by the admin
// quorum; the audit log pages and the signed heads.
func TestOperatorAPI(t *testing.T) {
	c := newCluster(t)
	fol := c.follower().ID()
	as := func(op string) *apiClient { return c.api(fol, pki.RoleOperator, op) }
	bobAPI, carolAPI, aliceAPI := as("bob"), as("carol"), as("alice")
	now := func() time.Time { return c.clock.Now().Truncate(time.Second) }
	r1 := c.withdrawal("op-1", c.dests[0], ether(1))
	r2 := c.withdrawal("op-2", c.dests[1], ether(2))
	onLeader := func(id string) *ledger.Request { return c.read(c.leader().ID(), id) }
	answer := func(a *apiClient, r *ledger.Request, op ledgertest.Operator, dec quorum.Decision, extra ...string) (int, map[string]any) {
		body := map[string]any{"approval": op.Sign(t, clusterID, r.ID, r.PayloadHash, dec, now().Add(time.Hour))}
		if len(extra) > 0 {
			body["reason"] = extra[0]
		}
		return a.do("POST", "/v1/requests/"+r.ID+"/approvals", body)
	}

	c.poll("the follower shows the wallet's address", func() error {
		if st, w := bobAPI.do("GET", "/v1/wallets/"+walletID, nil); st != 200 || w["address"] == nil {
			return fmt.Errorf("%d %v", st, w)
		}
		return nil
	})

	t.Run("ReviewRequests", func(t *testing.T) {
		st, got := bobAPI.do("GET", "/v1/whoami", nil)
		if op, _ := got["operator"].(map[string]any); st != 200 || got["principal"] != "bob" || op["id"] != "bob" || len(got["devices"].([]any)) != 1 {
			t.Fatalf("whoami: %d %v", st, got)
		}
		// The list reads the follower's replica as it is: wait until it
		// applied both creates (committed on the leader).
		c.poll("op-1 and op-2 on "+string(fol), func() error {
			if c.read(fol, "op-1") == nil || c.read(fol, "op-2") == nil {
				return fmt.Errorf("not applied yet")
			}
			return nil
		})
		st, got = bobAPI.do("GET", "/v1/requests?status=pending_approval", nil)
		rs, _ := got["requests"].([]any)
		if st != 200 || len(rs) != 2 {
			t.Fatalf("list: %d %v", st, got)
		}
		st, got = bobAPI.do("GET", "/v1/requests/op-1", nil)
		desc, _ := got["description"].(string)
		if st != 200 || got["from"] != c.wallet.Hex() || got["decimals"] != 18.0 || got["cluster_id"] != clusterID ||
			!strings.Contains(desc, "send 1 ETH (18 decimals)") || !strings.Contains(desc, c.dests[0].Hex()) || !strings.Contains(desc, "max fee") ||
			!strings.Contains(desc, "rule eth-hot") || !strings.Contains(desc, "approvals 0 of 2") {
			t.Fatalf("show: %d %v", st, got)
		}
		st, got = bobAPI.do("GET", "/v1/requests/nope", nil)
		wantError(t, "unknown request", 404, got, st, "not_found")
		st, got = bobAPI.do("GET", "/v1/wallets/"+walletID, nil)
		if st != 200 || got["address"] != c.wallet.Hex() {
			t.Fatalf("operator reads the wallet: %d %v", st, got)
		}
	})

	t.Run("BadAnswersChangeNothing", func(t *testing.T) {
		forged := bob.Sign(t, clusterID, r1.ID, r1.PayloadHash, quorum.Approve, now().Add(time.Hour))
		forged.Signature = slices.Clone(forged.Signature)
		forged.Signature[0] ^= 1
		before := onLeader("op-1")
		for _, tc := range []struct {
			name   string
			api    *apiClient
			path   string
			body   any
			status int
			code   string
		}{
			{"forged signature", bobAPI, "/v1/requests/op-1/approvals", map[string]any{"approval": forged}, 400, "invalid_approval"},
			{"expired", bobAPI, "/v1/requests/op-1/approvals", map[string]any{"approval": bob.Sign(t, clusterID, r1.ID, r1.PayloadHash, quorum.Approve, now().Add(-time.Minute))}, 400, "invalid_approval"},
			{"another payload", bobAPI, "/v1/requests/op-1/approvals", map[string]any{"approval": bob.Sign(t, clusterID, r1.ID, r2.PayloadHash, quorum.Approve, now().Add(time.Hour))}, 400, "invalid_approval"},
			{"another request's approval", bobAPI, "/v1/requests/op-1/approvals", map[string]any{"approval": bob.Sign(t, clusterID, r2.ID, r2.PayloadHash, quorum.Approve, now().Add(time.Hour))}, 400, "invalid_approval"},
			{"another operator's device", bobAPI, "/v1/requests/op-1/approvals", map[string]any{"approval": carol.Sign(t, clusterID, r1.ID, r1.PayloadHash, quorum.Approve, now().Add(time.Hour))}, 403, "approver_mismatch"},
			// The initiator is a backend principal: an operator certificate
			// naming it is refused before any handler (the ledger also never
			// counts an initiator's approval, SECURITY 31).
			{"the initiator's approval", as("backend"), "/v1/requests/op-1/approvals", map[string]any{"approval": backend.Sign(t, clusterID, r1.ID, r1.PayloadHash, quorum.Approve, now().Add(time.Hour))}, 401, "principal_inactive"},
			{"a reason with an approval", bobAPI, "/v1/requests/op-1/approvals", map[string]any{"approval": bob.Sign(t, clusterID, r1.ID, r1.PayloadHash, quorum.Approve, now().Add(time.Hour)), "reason": "x"}, 400, "invalid"},
			{"no approval", bobAPI, "/v1/requests/op-1/approvals", map[string]any{}, 400, "invalid"},
			{"unknown field", bobAPI, "/v1/requests/op-1/approvals", map[string]any{"approval": forged, "note": "x"}, 400, "malformed"},
			{"unknown request", bobAPI, "/v1/requests/nope/approvals", map[string]any{"approval": bob.Sign(t, clusterID, "nope", r1.PayloadHash, quorum.Approve, now().Add(time.Hour))}, 404, "not_found"},
			{"backend certificate", c.api(fol, pki.RoleBackend, "backend"), "/v1/requests/op-1/approvals", map[string]any{"approval": bob.Sign(t, clusterID, r1.ID, r1.PayloadHash, quorum.Approve, now().Add(time.Hour))}, 403, "forbidden"},
		} {
			st, got := tc.api.do("POST", tc.path, tc.body)
			wantError(t, tc.name, tc.status, got, st, tc.code)
		}
		if after := onLeader("op-1"); len(after.Approvals) != 0 || after.UpdatedIdx != before.UpdatedIdx {
			t.Fatalf("refused answers changed op-1: %+v", after.Approvals)
		}
		st, got := c.api(fol, pki.RoleBackend, "backend").do("GET", "/v1/requests", nil)
		wantError(t, "backend lists requests", 403, got, st, "forbidden")
	})

	t.Run("ApproveAndReject", func(t *testing.T) {
		st, got := answer(bobAPI, r1, bob, quorum.Approve)
		w, _ := got["withdrawal"].(map[string]any)
		if st != 200 || w["status"] != "pending_approval" || w["approvals"].(map[string]any)["collected"] != 1.0 {
			t.Fatalf("bob approves: %d %v", st, got)
		}
		st, got = answer(bobAPI, r1, bob, quorum.Approve)
		wantError(t, "a second approval", 409, got, st, "already_answered")
		if n := len(onLeader("op-1").Approvals); n != 1 {
			t.Fatalf("%d approvals after the repeat", n)
		}
		st, got = answer(carolAPI, r2, carol, quorum.Reject, "unknown destination")
		w, _ = got["withdrawal"].(map[string]any)
		if st != 200 || w["status"] != "rejected" || got["reject_reason"] != "unknown destination" {
			t.Fatalf("carol rejects: %d %v", st, got)
		}
		st, got = answer(bobAPI, r2, bob, quorum.Approve)
		wantError(t, "approval of a rejected request", 409, got, st, "ledger_refused")
		st, got = answer(carolAPI, r1, carol, quorum.Approve)
		w, _ = got["withdrawal"].(map[string]any)
		if st != 200 || w["status"] == "pending_approval" {
			t.Fatalf("carol approves: %d %v", st, got)
		}
		c.waitStatus(c.leader().ID(), "op-1", ledger.StatusSigned)
	})

	t.Run("AllowlistByTwoOperators", func(t *testing.T) {
		seed := sha256.Sum256([]byte("operator-test-allow"))
		dest := common.BytesToAddress(seed[:20]).Hex()
		ch := policy.Change{ID: "api-allow-1", Kind: policy.ChangeAllowlistAdd, Wallet: walletID, Chain: "eth", Network: network, Address: dest, Label: "cold storage"}
		sign := func(op ledgertest.Operator) quorum.Approval {
			return op.Sign(t, clusterID, ch.ID, ch.PayloadHash(), quorum.Approve, now().Add(time.Hour))
		}
		lower := ch
		lower.ID, lower.Address = "api-allow-lower", strings.ToLower(dest)
		st, got := bobAPI.do("POST", "/v1/changes", map[string]any{"change": ledger.ProposedChange{Policy: &lower},
			"approval": bob.Sign(t, clusterID, lower.ID, lower.PayloadHash(), quorum.Approve, now().Add(time.Hour))})
		wantError(t, "lower-case address", 400, got, st, "address_not_canonical", "address")
		st, got = bobAPI.do("POST", "/v1/changes", map[string]any{"change": ledger.ProposedChange{Policy: &ch}, "approval": sign(carol)})
		wantError(t, "proposed with another's device", 403, got, st, "approver_mismatch")
		st, got = bobAPI.do("POST", "/v1/changes", map[string]any{"change": ledger.ProposedChange{Policy: &ch}, "approval": sign(bob)})
		if st != 201 || got["status"] != "collecting" || got["proposed_by"] != "bob" || got["required"] != 2.0 ||
			!strings.Contains(got["description"].(string), "add "+dest) {
			t.Fatalf("propose: %d %v", st, got)
		}
		st, got = bobAPI.do("POST", "/v1/changes/"+ch.ID+"/approvals", map[string]any{"approval": sign(bob)})
		wantError(t, "bob again", 409, got, st, "already_answered")
		st, got = bobAPI.do("GET", "/v1/changes", nil)
		if cs, _ := got["changes"].([]any); st != 200 || len(cs) != 1 {
			t.Fatalf("changes: %d %v", st, got)
		}
		st, got = aliceAPI.do("POST", "/v1/changes/"+ch.ID+"/approvals", map[string]any{"approval": sign(alice)})
		if st != 200 || got["status"] != "applied" {
			t.Fatalf("alice approves: %d %v", st, got)
		}
		st, got = carolAPI.do("GET", "/v1/allowlist?wallet="+walletID, nil)
		found := false
		for _, e := range got["allowlist"].([]any) {
			if e.(map[string]any)["address"] == dest {
				found = true
			}
		}
		if st != 200 || !found {
			t.Fatalf("allowlist: %d %v", st, got)
		}
		st, got = carolAPI.do("GET", "/v1/changes/"+ch.ID, nil)
		if st != 200 || got["status"] != "applied" {
			t.Fatalf("applied change: %d %v", st, got)
		}
		st, got = aliceAPI.do("POST", "/v1/changes/"+ch.ID+"/approvals", map[string]any{"approval": sign(carol)})
		wantError(t, "approval of an applied change", 409, got, st, "ledger_refused")
	})

	t.Run("LockAndUnlock", func(t *testing.T) {
		lock := policy.Change{ID: "api-lock-1", Kind: policy.ChangeLock, Wallet: walletID, Reason: "drill"}
		st, got := carolAPI.do("POST", "/v1/changes", map[string]any{"change": ledger.ProposedChange{Policy: &lock},
			"approval": carol.Sign(t, clusterID, lock.ID, lock.PayloadHash(), quorum.Approve, now().Add(time.Hour))})
		if st != 201 || got["status"] != "applied" {
			t.Fatalf("lock: %d %v", st, got)
		}
		st, got = carolAPI.do("GET", "/v1/locks", nil)
		if ls, _ := got["locks"].([]any); st != 200 || len(ls) != 1 || ls[0].(map[string]any)["active"] != true || ls[0].(map[string]any)["locked_by"] != "carol" {
			t.Fatalf("locks: %d %v", st, got)
		}
		unlock := policy.Change{ID: "api-unlock-1", Kind: policy.ChangeUnlock, Wallet: walletID}
		sign := func(op ledgertest.Operator) quorum.Approval {
			return op.Sign(t, clusterID, unlock.ID, unlock.PayloadHash(), quorum.Approve, now().Add(time.Hour))
		}
		st, got = carolAPI.do("POST", "/v1/changes", map[string]any{"change": ledger.ProposedChange{Policy: &unlock}, "approval": sign(carol)})
		wantError(t, "unlock by an approver", 403, got, st, "approval_not_allowed")
		st, got = aliceAPI.do("POST", "/v1/changes", map[string]any{"change": ledger.ProposedChange{Policy: &unlock}, "approval": sign(alice)})
		if st != 201 || got["status"] != "collecting" {
			t.Fatalf("unlock proposed: %d %v", st, got)
		}
		st, got = bobAPI.do("POST", "/v1/changes/"+unlock.ID+"/approvals", map[string]any{"approval": sign(bob)})
		if st != 200 || got["status"] != "applied" {
			t.Fatalf("unlock approved: %d %v", st, got)
		}
		c.poll("the unlock recorded", func() error {
			_, got := carolAPI.do("GET", "/v1/locks", nil)
			if l := got["locks"].([]any)[0].(map[string]any); l["unlock_at"] == nil {
				return fmt.Errorf("lock %v", l)
			}
			return nil
		})
	})

	t.Run("AuditExport", func(t *testing.T) {
		var seqs []float64
		after := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("too many pages")
			}
			st, got := bobAPI.do("GET", "/v1/audit?limit=20"+after, nil)
			if st != 200 {
				t.Fatalf("audit: %d %v", st, got)
			}
			for _, e := range got["events"].([]any) {
				seqs = append(seqs, e.(map[string]any)["seq"].(float64))
			}
			next, ok := got["next_after"].(float64)
			if !ok {
				break
			}
			after = fmt.Sprintf("&after=%d", int(next))
		}
		for i := range seqs {
			if seqs[i] != float64(i+1) {
				t.Fatalf("audit seqs %v", seqs)
			}
		}
		if len(seqs) < 10 {
			t.Fatalf("only %d audit events", len(seqs))
		}
		st, got := bobAPI.do("GET", "/v1/audit/heads", nil)
		if _, ok := got["heads"].([]any); st != 200 || !ok {
			t.Fatalf("heads: %d %v", st, got)
		}
		st, got = bobAPI.do("GET", "/v1/audit?limit=0", nil)
		wantError(t, "limit 0", 400, got, st, "invalid", "limit")
	})

	if bobAPI.spec.checked < 10 {
		t.Errorf("only %d exchanges checked against api/openapi.yaml", bobAPI.spec.checked)
	}
}
