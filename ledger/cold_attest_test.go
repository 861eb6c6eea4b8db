package ledger_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/amount"
	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/ledger/ledgertest"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/quorum"
)

// bundleHash is a well-formed made-up bundle hash.
func bundleHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// exportCmd is cold.export of request id under the harness's governance
// head now.
func (h *fsmHarness) exportCmd(id, bundle string) ledger.ColdExport {
	var head string
	_ = h.f.Read(func(st *ledger.State) error {
		head = st.GovernanceHead
		if head == "" {
			head = st.GenesisHash
		}
		return nil
	})
	auth := alice.sign(h.t, id, ledger.ColdExportHash(id, h.req(id).PayloadHash), quorum.Approve, h.now.Add(time.Hour))
	return ledger.ColdExport{RequestID: id, BundleHash: bundleHash(bundle), GovernanceHead: head, ExportedAt: h.now, Authorization: &auth}
}

// importCmd is cold.import of signed for exported request id, authorized
// by alice.
func (h *fsmHarness) importCmd(id string, signed []byte, txHash string) ledger.ColdImport {
	h.t.Helper()
	auth := alice.sign(h.t, id, ledger.ColdImportHash(id, h.req(id).BundleHash, signed), quorum.Approve, h.now.Add(time.Hour))
	return ledger.ColdImport{RequestID: id, Signed: signed, TxHash: txHash, Authorization: &auth}
}

// coldAttest is node's attestation of request id's export as the
// harness's state records it, signed with its ledgertest.NodeKey.
func (h *fsmHarness) coldAttest(id string, node pki.NodeID) ledger.ColdAttest {
	h.t.Helper()
	cluster, genesisHash := h.pinned()
	head := h.req(id).ExportHead(cluster, genesisHash)
	sig, err := ledger.SignExport(head, node, ledgertest.NodeKey(node))
	if err != nil {
		h.t.Fatal(err)
	}
	return ledger.ColdAttest{Request: id, Sig: sig}
}

// exported exports request id and has the genesis node set attest it.
func (h *fsmHarness) exported(id string) *ledger.Request {
	h.t.Helper()
	h.must("n1", h.exportCmd(id, id))
	var r *ledger.Request
	for _, n := range ledgertest.GenesisNodes {
		r = h.must(string(n), h.coldAttest(id, n))
	}
	if r.Export == nil || !r.Export.Attested {
		h.t.Fatalf("%s: not attested after the whole node set signed", id)
	}
	return r
}

// TestFSMColdExportAttested: cold.export names the governance head the
// bundle was built under and the ledger refuses any other; the node set
// then attests the export from its own state, each signature checked
// against the head this state recorded and the node set's pinned keys;
// the export is attested at the checkpoint quorum (3 of 3 here), and
// only then is an import accepted.
func TestFSMColdExportAttested(t *testing.T) {
	h := newHarness(t)
	c := ledger.RequestCreate{ID: "c1", Withdrawal: coldWithdrawal(), Payload: []byte("psbt"), PayloadHash: [32]byte{9}, Outpoints: []string{"aa:0"}, ExpiresAt: h.now.Add(time.Hour)}
	r := h.must("backend", c)
	h.must("api", alice.approve(t, r, h.now.Add(time.Hour)))
	h.must("api", carol.approve(t, r, h.now.Add(time.Hour)))

	// Export needs an admin's or approver's authorization of exactly
	// that: none, the backend's, or an approval of the withdrawal itself
	// (signed over its payload hash) do not do.
	noAuth := h.exportCmd("c1", "b1")
	noAuth.Authorization = nil
	byBackend := h.exportCmd("c1", "b1")
	bb := backend.sign(t, "c1", ledger.ColdExportHash("c1", r.PayloadHash), quorum.Approve, h.now.Add(time.Hour))
	byBackend.Authorization = &bb
	anApproval := h.exportCmd("c1", "b1")
	aa := alice.sign(t, "c1", r.PayloadHash, quorum.Approve, h.now.Add(time.Hour))
	anApproval.Authorization = &aa
	for name, cmd := range map[string]ledger.ColdExport{"none": noAuth, "the backend's": byBackend, "an approval of the withdrawal": anApproval} {
		if _, err := h.apply("n1", cmd); !errors.Is(err, ledger.ErrQuorum) {
			t.Fatalf("export authorized by %s: %v, want ErrQuorum", name, err)
		}
	}
	stale := h.exportCmd("c1", "b1")
	stale.GovernanceHead = bundleHash("a head that leaves a change out")
	h.refuse(ledger.ErrConflict, "n1", stale)
	short := h.exportCmd("c1", "b1")
	short.BundleHash = "feed"
	h.refuse(ledger.ErrInvalid, "n1", short)
	r = h.must("n1", h.exportCmd("c1", "b1"))
	if r.Status != ledger.StatusExported || r.Export == nil || r.Export.Attested {
		t.Fatalf("export: %s %+v", r.Status, r.Export)
	}
	h.refuse(ledger.ErrWrongStatus, "n1", h.importCmd("c1", []byte("signed"), ""))

	cluster, genesisHash := h.pinned()
	other := r.ExportHead(cluster, genesisHash)
	other.BundleHash = bundleHash("another bundle")
	wrongSig, err := ledger.SignExport(other, "n1", ledgertest.NodeKey("n1"))
	if err != nil {
		t.Fatal(err)
	}
	notPinned, err := ledger.SignExport(r.ExportHead(cluster, genesisHash), "n1", otherKey(t))
	if err != nil {
		t.Fatal(err)
	}
	outsider := h.coldAttest("c1", "n9")
	for name, cmd := range map[string]ledger.ColdAttest{
		"another bundle hash":             {Request: "c1", Sig: wrongSig},
		"a key the node set does not pin": {Request: "c1", Sig: notPinned},
		"a node outside the node set":     outsider,
		"a request never exported":        {Request: "nope", Sig: wrongSig},
	} {
		t.Run(name, func(t *testing.T) {
			before := h.encoded()
			if _, err := h.apply("n1", cmd); !errors.Is(err, ledger.ErrCheckpoint) {
				t.Fatalf("got %v, want ErrCheckpoint", err)
			}
			if string(before) != string(h.encoded()) {
				t.Fatal("a refused attestation changed the state")
			}
		})
	}

	for i, n := range ledgertest.GenesisNodes {
		r = h.must(string(n), h.coldAttest("c1", n))
		if want := i == len(ledgertest.GenesisNodes)-1; r.Export.Attested != want {
			t.Fatalf("after %d attestations: attested %v", i+1, r.Export.Attested)
		}
	}
	if err := r.VerifyExport(cluster, genesisHash, h.nodes()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.apply("n1", h.coldAttest("c1", "n1")); !errors.Is(err, ledger.ErrCheckpoint) || !strings.Contains(err.Error(), "already") {
		t.Fatalf("an attestation after the quorum: %v", err)
	}
	// The import needs an admin's or approver's authorization over exactly
	// these bytes and this bundle.
	otherBytes := h.importCmd("c1", []byte("signed"), "")
	otherBytes.Signed = []byte("other signed bytes")
	backendAuth := h.importCmd("c1", []byte("signed"), "")
	ba := backend.sign(t, "c1", ledger.ColdImportHash("c1", r.BundleHash, []byte("signed")), quorum.Approve, h.now.Add(time.Hour))
	backendAuth.Authorization = &ba
	for name, cmd := range map[string]ledger.ColdImport{"by the backend": backendAuth, "over other bytes": otherBytes} {
		if _, err := h.apply("n1", cmd); !errors.Is(err, ledger.ErrQuorum) {
			t.Fatalf("an import authorized %s: %v, want ErrQuorum", name, err)
		}
	}
	if r = h.must("n1", h.importCmd("c1", []byte("signed"), "")); r.Status != ledger.StatusImported {
		t.Fatalf("import: %s", r.Status)
	}
}

// nodes is the harness state's node set.
func (h *fsmHarness) nodes() map[pki.NodeID]*ledger.Node {
	var out map[pki.NodeID]*ledger.Node
	_ = h.f.Read(func(st *ledger.State) error { out = st.Nodes; return nil })
	return out
}

// TestFSMColdRouteOnHotWalletHoldsNothing: a hot wallet's withdrawal above
// its rule's cold_above routes cold. Nodes never sign the cold route and
// the wallet has no cold key, so it can never be signed: it holds no nonce
// (a later hot withdrawal takes the same nonce), it is neither claimed nor
// exported, and rules that route it hot again let it be claimed only
// while its nonce is free.
func TestFSMColdRouteOnHotWalletHoldsNothing(t *testing.T) {
	h := newHarness(t)
	rulesSet := func(id, body string) ledger.RulesSet {
		r, err := policy.ParseRules([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		ph, err := policy.RulesChangeHash(r)
		if err != nil {
			t.Fatal(err)
		}
		exp := h.now.Add(time.Hour)
		return ledger.RulesSet{ID: id, Body: []byte(body), Approvals: []quorum.Approval{
			alice.sign(t, id, ph, quorum.Approve, exp), carol.sign(t, id, ph, quorum.Approve, exp)}}
	}
	hotRule := "    class: hot\n    allowlist_required: false\n"
	withCold := strings.Replace(testRules, hotRule, hotRule+"    route: {cold_above: \"2\"}\n", 1)
	if withCold == testRules {
		t.Fatal("the test rules changed: cold_above not inserted")
	}
	h.must("api", rulesSet("rules-cold-above", withCold))

	big := createCmd("big", 7)
	big.Amount = amount.FromUint64(3_000_000_000_000_000_000)
	big.ExpiresAt = h.now.Add(24 * time.Hour)
	big = initiated(big, backend, h.now.Add(time.Hour))
	r := h.must("backend", big)
	if r.Decision.Route != policy.RouteCold || r.Status != ledger.StatusAwaitingApprovals {
		t.Fatalf("3 ETH from the hot wallet: %s %s", r.Status, r.Decision.Route)
	}
	var held string
	_ = h.f.Read(func(st *ledger.State) error { held = st.Nonces["hot/7"]; return nil })
	if held != "" {
		t.Fatalf("nonce 7 of the hot wallet held by %q", held)
	}
	small := h.approved("small", 7) // the same nonce, on the hot route
	h.must("api", bob.approve(t, r, h.now.Add(24*time.Hour)))
	r = h.must("api", dave.approve(t, r, h.now.Add(24*time.Hour)))
	if r.Status != ledger.StatusApproved {
		t.Fatalf("big after two approvals: %s", r.Status)
	}
	h.refuse(ledger.ErrWrongStatus, "n1", h.claimCmd("big"))
	h.refuse(ledger.ErrWrongStatus, "n1", h.exportCmd("big", "b"))

	// Rules routing it hot again: the claim needs its nonce, which "small"
	// holds.
	h.must("api", rulesSet("rules-hot-again", testRules))
	if _, err := h.apply("n1", h.claimCmd("big")); !errors.Is(err, ledger.ErrWrongStatus) && !errors.Is(err, ledger.ErrAllocated) {
		t.Fatalf("claim of big while small holds its nonce: %v", err)
	}
	if got := h.must("n1", h.claimCmd("small")); got.Status != ledger.StatusClaimed {
		t.Fatalf("small: %s", got.Status)
	}
	_ = small
}
