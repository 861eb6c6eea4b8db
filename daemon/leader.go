package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/policy"
	"github.com/custody-dev/custody/withdraw"
)

// Leader-loop timing.
const (
	// leaderTick is how often the leader looks for work in its ledger.
	leaderTick = 200 * time.Millisecond
	// MaxSigningAttempts bounds the sessions the leaders open for one
	// request (the first claim and the re-claims after failures); a
	// request that failed that often stays failed for a person to look at.
	MaxSigningAttempts = 3
	// retryBackoff is the pause before a failed request is re-claimed.
	retryBackoff = 2 * time.Second
	// keygenBackoff is the pause before a failed keygen is tried again.
	keygenBackoff = 10 * time.Second
	// chainTick is how often the leader broadcasts and tracks.
	chainTick = time.Second
	// claimGrace is how far in the past the leader's own member must
	// already allow a hot request (its cooling-off and unlock delays counted
	// from when this node first saw each change) before the leader claims
	// it: the other members see each change a little later (they apply the
	// log, then observe it every half second), and a claim they refuse for
	// a delay still running would burn one of MaxSigningAttempts.
	claimGrace = 2 * time.Second
)

// leaderLoop runs on every node and acts only while the node leads: it
// writes the pinned genesis into an empty ledger, signs approved hot
// requests, fails and re-claims claims whose session outlived its timeout
// (their leader died or lost leadership), retries failed sessions a bounded
// number of times and expires requests past their expiry. The ledger is the
// only memory: a new leader finds all of this in its own replica, so no
// request is lost across leader changes, and the members' watermarks keep
// any re-claim from signing a second, different transaction.
func (n *Node) leaderLoop(ctx context.Context) {
	tick := time.NewTicker(leaderTick)
	defer tick.Stop()
	lt := &leaderTimers{lastTry: map[string]time.Time{}, claimSeen: map[string]time.Time{}, waiting: map[string]time.Time{}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !n.store.IsLeader() || n.draining() || n.store.Halted() != nil {
			continue
		}
		// A compromised former leader may have added a raft voter outside
		// the node set (raft's own configuration change; docs/trust.md):
		// every honest leader removes it.
		if stray := n.store.StrayVoters(); len(stray) > 0 {
			removed, err := n.store.PruneVoters(ctx)
			n.log.Warn("raft voters outside the node set", "stray", stray, "removed", removed, "err", err)
		}
		if err := n.leaderPass(ctx, lt); err != nil && ctx.Err() == nil {
			n.log.Warn("leader pass", "err", err)
		}
	}
}

// leaderTimers are the leader's own measures of time (monotonic, this
// process's): when it last started a session for a request, and when it
// first saw each claim without a result. A new leader gives every claim it
// finds a whole session timeout from the moment it saw it.
type leaderTimers struct {
	lastTry   map[string]time.Time
	claimSeen map[string]time.Time // by session ID
	waiting   map[string]time.Time // approved requests not claimed yet, logged once
}

type leaderWork struct {
	genesis bool
	sign    []string // approved hot requests
	stale   []*ledger.Request
	retry   []*ledger.Request
	expire  []string
	keygen  []string // wallets the admins approved, waiting for their key
	reshare []string // wallets the admins approved a new committee for
	send    []string // signed transactions to broadcast
	track   []string // broadcast transactions to follow on chain
}

func (n *Node) leaderPass(ctx context.Context, lt *leaderTimers) error {
	now := time.Now()
	timeout := time.Duration(n.cfg.TSS.SessionTimeout)
	var w leaderWork
	open := map[string]bool{}
	err := n.store.ReadLocal(func(st *ledger.State) error {
		if st.Registry.ClusterID == "" {
			w.genesis = true
			return nil
		}
		w.send, w.track = withdraw.ChainWork(st, func(wallet string) bool {
			return !slices.Contains(n.cfg.Broadcast.SkipWallets, wallet)
		})
		attempts := map[string]int{}
		for _, req := range st.Sessions {
			attempts[req]++
		}
		for id, wl := range st.Wallets {
			if wl.Status == ledger.WalletKeygen && !n.signing("keygen:"+id) && now.Sub(lt.lastTry["keygen:"+id]) > keygenBackoff {
				w.keygen = append(w.keygen, id)
			}
			if wl.Status == ledger.WalletResharing && !n.signing("reshare:"+id) && now.Sub(lt.lastTry["reshare:"+id]) > keygenBackoff {
				w.reshare = append(w.reshare, id)
			}
		}
		for id, r := range st.Requests {
			if n.signing(id) {
				continue
			}
			switch r.Status {
			case ledger.StatusApproved:
				if !r.ExpiresAt.IsZero() && !st.Clock.Before(r.ExpiresAt) {
					w.expire = append(w.expire, id)
				} else if r.Decision.Route == policy.RouteHot && now.Sub(lt.lastTry[id]) > retryBackoff {
					if err := n.member.PolicyReady(st, r, now.Add(-claimGrace)); err != nil {
						if _, logged := lt.waiting[id]; !logged {
							lt.waiting[id] = now
							n.log.Info("approved, not claimed yet: a delay is still running as this node saw the change", "request", id, "err", err)
						}
						break
					}
					delete(lt.waiting, id)
					w.sign = append(w.sign, id)
				}
			case ledger.StatusAwaitingApprovals:
				if !r.ExpiresAt.IsZero() && !st.Clock.Before(r.ExpiresAt) {
					w.expire = append(w.expire, id)
				}
			case ledger.StatusClaimed:
				if r.Result != nil || r.Claim == nil {
					break
				}
				open[r.Claim.SessionID] = true
				seen, ok := lt.claimSeen[r.Claim.SessionID]
				if !ok {
					lt.claimSeen[r.Claim.SessionID] = now
				} else if now.Sub(seen) > timeout+leaderTick {
					w.stale = append(w.stale, r.Clone())
				}
			case ledger.StatusFailed:
				if r.Claim != nil && attempts[id] < MaxSigningAttempts && now.Sub(lt.lastTry[id]) > retryBackoff {
					w.retry = append(w.retry, r.Clone())
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for id, at := range lt.lastTry {
		if now.Sub(at) > time.Hour {
			delete(lt.lastTry, id)
		}
	}
	for id, at := range lt.waiting {
		if now.Sub(at) > time.Hour {
			delete(lt.waiting, id)
		}
	}
	for sid := range lt.claimSeen {
		if !open[sid] {
			delete(lt.claimSeen, sid)
		}
	}
	actor := "node:" + string(n.cfg.NodeID)
	if w.genesis {
		g := ledger.GenesisCommand(n.genesis)
		if _, err := n.store.Submit(ctx, "genesis", g); err != nil && !errors.Is(err, ledger.ErrConflict) {
			return fmt.Errorf("write the pinned genesis: %w", err)
		}
		n.log.Info("wrote the pinned genesis into the new ledger", "hash", g.Hash)
		return nil
	}
	for _, id := range w.expire {
		if _, err := n.store.Submit(ctx, actor, ledger.ExpireRequest{RequestID: id}); err != nil {
			n.log.Warn("expire", "request", id, "err", err)
		}
	}
	for _, r := range w.stale {
		// The session's leader is gone (or wedged): record the failure so
		// the request can be re-claimed. A late result of that session is
		// then refused by the ledger (fenced by the session ID).
		_, err := n.store.Submit(ctx, actor, ledger.RecordResult{RequestID: r.ID, SessionID: r.Claim.SessionID,
			Error: fmt.Sprintf("abandoned: no result within the session timeout (%s) of the claim by %s", time.Duration(n.cfg.TSS.SessionTimeout), r.Claim.By)})
		if err != nil {
			n.log.Warn("fail a stale claim", "request", r.ID, "err", err)
			continue
		}
		n.log.Warn("failed a stale claim", "request", r.ID, "session", r.Claim.SessionID, "claimed_by", r.Claim.By)
	}
	if (len(w.send) > 0 || len(w.track) > 0) && now.Sub(lt.lastTry["chain"]) > chainTick {
		lt.lastTry["chain"] = now
		n.startChainWork(w.send, w.track)
	}
	for _, id := range w.keygen {
		lt.lastTry["keygen:"+id] = now
		n.startKeygen(id)
	}
	for _, id := range w.reshare {
		lt.lastTry["reshare:"+id] = now
		n.startReshare(id)
	}
	if len(w.sign) > 0 || len(w.retry) > 0 {
		// A wallet that just became active may not be registered yet (the
		// observe loop runs every half second).
		if err := n.syncWallets(); err != nil {
			n.log.Warn("wallet sync", "err", err)
		}
	}
	for _, id := range w.sign {
		lt.lastTry[id] = now
		n.startSession(id, "")
	}
	for _, r := range w.retry {
		lt.lastTry[r.ID] = now
		n.startSession(r.ID, r.Claim.SessionID)
	}
	return nil
}

// signing reports whether this node runs a session for the request.
func (n *Node) signing(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sessions[id]
}

// startSession claims (or, after failedSession, re-claims) the request and
// collects the signatures in the background; the result or the failure is
// committed by the orchestrator.
func (n *Node) startSession(id, failedSession string) {
	n.goTracked(id, time.Duration(n.cfg.TSS.SessionTimeout), func(ctx context.Context) {
		signers, chain, err := n.liveSigners(ctx, id)
		if err != nil {
			n.log.Warn("not signing yet", "request", id, "err", err)
			return
		}
		start := time.Now()
		defer func() { n.metrics.session(chain, time.Since(start), err) }()
		if failedSession == "" {
			_, err = n.orch.Sign(ctx, id, signers)
		} else {
			cl, rerr := n.orch.Reclaim(ctx, id, signers)
			if err = rerr; err == nil {
				_, err = n.orch.Collect(ctx, id, cl)
			}
		}
		if err != nil {
			n.log.Warn("signing session failed", "request", id, "reclaim", failedSession != "", "err", err)
			return
		}
		n.log.Info("signed", "request", id, "reclaim", failedSession != "")
	})
}

// observeLoop follows this node's replica: it registers wallets that became
// active (syncWallets) and has the member record, from its own clock, when
// it first saw each governance change (member.Observe): the cooling-off and
// unlock delays a member enforces count from there.
func (n *Node) observeLoop(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		idx := n.store.StateIndex()
		if idx == last {
			continue
		}
		if err := n.syncWallets(); err != nil && ctx.Err() == nil {
			n.log.Warn("wallet sync", "err", err)
		}
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.member.Observe(octx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				n.log.Debug("observe", "err", err)
			}
			continue
		}
		last = idx
	}
}

// ErrTooFewSigners: fewer than threshold+1 committee members answer.
var ErrTooFewSigners = errors.New("daemon: too few committee members reachable")

// liveSigners picks threshold+1 committee members of the request's wallet
// that answer now: this node first when it is one, then the others in
// committee order whose node RPC status answers within a second and whose
// ledger is not halted. A claim is made only with a full set, so a node
// that is down does not burn signing attempts.
// keygenReady checks that every member who makes a key share in a keygen
// (the committee) or a reshare (the new committee) has tss pre-params ready
// now, by its status: a member that would have to make them first (minutes
// on a busy machine) would hold every other member in the session until
// the keygen timeout, and the aborted session would burn the others' sets.
// The next leader pass asks again (keygenBackoff).
func (n *Node) keygenReady(ctx context.Context, walletID string, reshare bool) error {
	var members []pki.NodeID
	if err := n.store.ReadLocal(func(st *ledger.State) error {
		w := st.Wallets[walletID]
		switch {
		case w == nil:
			return fmt.Errorf("%w: wallet %q", ledger.ErrNotFound, walletID)
		case reshare && w.Reshare != nil:
			members = slices.Clone(w.Reshare.NewCommittee)
		default:
			members = slices.Clone(w.Committee)
		}
		return nil
	}); err != nil {
		return err
	}
	var waiting []pki.NodeID
	for _, id := range members {
		if id == n.cfg.NodeID {
			if n.pool == nil || n.pool.Len() == 0 {
				waiting = append(waiting, id)
			}
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.peers.client.Load().Status(sctx, id)
		cancel()
		if err != nil || !st.Ready["keygen"] {
			waiting = append(waiting, id)
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("members %v have no tss pre-params ready yet (or do not answer)", waiting)
	}
	return nil
}

func (n *Node) liveSigners(ctx context.Context, requestID string) (_ []pki.NodeID, chain string, _ error) {
	var committee []pki.NodeID
	var threshold int
	if err := n.store.ReadLocal(func(st *ledger.State) error {
		r := st.Requests[requestID]
		if r == nil {
			return fmt.Errorf("%w: %q", ledger.ErrNotFound, requestID)
		}
		w := st.Wallets[r.Wallet]
		if w == nil {
			return fmt.Errorf("%w: wallet %q", ledger.ErrNotFound, r.Wallet)
		}
		committee, threshold, chain = slices.Clone(w.Committee), w.Threshold, w.Chain
		return nil
	}); err != nil {
		return nil, "", err
	}
	var out []pki.NodeID
	if slices.Contains(committee, n.cfg.NodeID) {
		out = append(out, n.cfg.NodeID)
	}
	for _, id := range committee {
		if len(out) == threshold+1 {
			break
		}
		if id == n.cfg.NodeID {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := n.peers.client.Load().Status(sctx, id)
		cancel()
		if err != nil || st.Halted != "" {
			continue
		}
		out = append(out, id)
	}
	if len(out) < threshold+1 {
		return nil, "", fmt.Errorf("%w: %d of the %d needed (committee %v)", ErrTooFewSigners, len(out), threshold+1, committee)
	}
	slices.Sort(out)
	return out, chain, nil
}

// startKeygen runs the distributed keygen of an approved wallet in the
// background (withdraw.WalletCreator: every committee member's keygen, one
// agreed key, test signatures by two different t+1 subsets, the committee's
// attestations committed in wallet.keyed). A failure leaves the wallet
// waiting; the next leader pass tries again with a new session.
func (n *Node) startKeygen(walletID string) {
	n.goTracked("keygen:"+walletID, time.Duration(n.cfg.TSS.KeygenTimeout), func(ctx context.Context) {
		if err := n.keygenReady(ctx, walletID, false); err != nil {
			n.log.Info("keygen not started yet", "wallet", walletID, "err", err)
			return
		}
		n.log.Info("keygen started", "wallet", walletID)
		pub, err := n.wallets.CreateWallet(ctx, walletID)
		if err != nil {
			n.log.Warn("keygen failed", "wallet", walletID, "err", err)
			return
		}
		n.log.Info("wallet created", "wallet", walletID, "pubkey", hex.EncodeToString(pub))
	})
}

// startReshare runs the approved reshare of a wallet to its new committee
// in the background (withdraw.WalletCreator.Reshare: old signers and new
// members together, the same key, test signatures by two t'+1 subsets of
// the new committee, the new members' attestations committed in
// wallet.reshared). A failure leaves the wallet resharing, still signed for
// by its old committee; the next leader pass tries again with a new session.
func (n *Node) startReshare(walletID string) {
	n.goTracked("reshare:"+walletID, time.Duration(n.cfg.TSS.KeygenTimeout), func(ctx context.Context) {
		if err := n.keygenReady(ctx, walletID, true); err != nil {
			n.log.Info("reshare not started yet", "wallet", walletID, "err", err)
			return
		}
		n.log.Info("reshare started", "wallet", walletID)
		if _, err := n.wallets.Reshare(ctx, walletID); err != nil {
			n.log.Warn("reshare failed", "wallet", walletID, "err", err)
			return
		}
		n.log.Info("wallet reshared", "wallet", walletID)
	})
}

// startChainWork broadcasts the signed transactions the cluster sends
// (withdraw.Orchestrator.Broadcast: checked against the approved payload,
// idempotent) and follows the broadcast ones on chain
// (Orchestrator.Track: confirmed, reverted, dropped or replaced once
// settled, broadcast.confirmations deep). A dropped or replaced
// transaction is reported, never re-signed: a new signature needs a new
// approved request.
func (n *Node) startChainWork(send, track []string) {
	n.goTracked("chain", time.Minute, func(ctx context.Context) {
		for _, id := range send {
			if _, err := n.orch.Broadcast(ctx, id); err != nil {
				n.log.Warn("broadcast", "request", id, "err", err)
				continue
			}
			n.log.Info("broadcast", "request", id)
		}
		for _, id := range track {
			r, err := n.orch.Track(ctx, id, uint64(n.cfg.Broadcast.Confirmations))
			if err != nil {
				n.log.Debug("track", "request", id, "err", err)
				continue
			}
			if r.Status != ledger.StatusBroadcast {
				n.log.Info("on chain", "audit", true, "request", id, "status", string(r.Status))
			}
		}
	})
}

// goTracked runs fn in the background, bounded by timeout, registered
// under key so Shutdown waits for it; nothing starts while the node drains
// or while work under the same key runs.
func (n *Node) goTracked(key string, timeout time.Duration, fn func(ctx context.Context)) {
	done, err := n.track(key)
	if err != nil {
		return
	}
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		defer done()
		ctx, cancel := context.WithTimeout(n.ctx, timeout)
		defer cancel()
		fn(ctx)
	}()
}
