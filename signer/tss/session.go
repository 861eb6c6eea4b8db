package tss

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"sync/atomic"

	tsslib "github.com/bnb-chain/tss-lib/v2/tss"
	"github.com/custody-dev/custody/pki"
)

// OutboundHook sees every envelope a session sends. It must call send (now
// or later, at most once) for the envelope to leave; the presignature pool
// uses it to hold back round-4 signing messages. Returning an error aborts.
type OutboundHook func(env *Envelope, send func() error) error

// TypePeerAbort tells the other members that a session was aborted, so they
// stop at once instead of waiting for their deadline.
const TypePeerAbort = "custody.tss.Abort"

// ErrPeerAborted: another member aborted the session and said so. Culprits
// it names are its claim only, so they are reported in Reason, not charged.
var ErrPeerAborted = errors.New("tss: aborted by a peer")

type slotKey struct {
	typ  string
	from partyRef
}

type pendingBcast struct {
	msg  tsslib.ParsedMessage
	hash [32]byte
	need map[partyRef]bool
}

// local is one tss-lib party this node runs in the session.
type local struct {
	ref      partyRef
	party    tsslib.Party
	work     chan tsslib.ParsedMessage
	slots    map[slotKey][32]byte
	pending  map[slotKey]*pendingBcast
	echoes   map[slotKey]map[partyRef][32]byte
	finished bool
	result   any
}

// confirmSpec is an optional phase after the protocol: every sender sends a
// digest of its result to every receiver, and receivers require all digests
// to be equal (same public key everywhere, SECURITY.md item 8).
type confirmSpec struct {
	senders   []partyRef
	receivers []partyRef
	digest    func(role Role, result any) []byte // nil result: role takes no part in the protocol
}

type roleResult struct {
	role Role
	val  any
}

type workerErr struct {
	role Role
	err  *tsslib.Error
	from partyRef // sender of the message being processed, if any
	pan  any
}

type session struct {
	e         *Engine
	id        SessionID
	wallet    string
	proto     string
	spec      map[string]msgSpec
	threshold func(typ string) int
	members   map[partyRef]*tsslib.PartyID
	byKey     map[string]partyRef
	locals    map[Role]*local
	hook      OutboundHook
	confirm   *confirmSpec
	// check, if set, is a protocol-specific pre-check run after precheck
	// (signing: MtA range proofs, signchecks.go).
	check func(msg tsslib.ParsedMessage, from partyRef) error

	inbox      chan Delivery
	inboxBytes atomic.Int64 // bytes queued in inbox, bounded by maxInboxBytes
	out        chan tsslib.Message
	results    chan roleResult
	errs       chan workerErr
	done       chan struct{}
	ctx        context.Context
	confirms   map[partyRef][]byte
	sentConf   bool
	// workers are the goroutines driving tss-lib parties; run waits for
	// them, so that when a session returns tss-lib no longer reads the
	// share (the caller may wipe it).
	workers sync.WaitGroup
}

func newSession(e *Engine, id SessionID, wallet, proto string) *session {
	return &session{
		e: e, id: id, wallet: wallet, proto: proto, spec: specs[proto],
		members:  map[partyRef]*tsslib.PartyID{},
		byKey:    map[string]partyRef{},
		locals:   map[Role]*local{},
		inbox:    make(chan Delivery, 4096),
		out:      make(chan tsslib.Message, 4096),
		results:  make(chan roleResult, 4),
		errs:     make(chan workerErr, 8),
		done:     make(chan struct{}),
		confirms: map[partyRef][]byte{},
	}
}

func (s *session) addMember(ref partyRef, pid *tsslib.PartyID) {
	s.members[ref] = pid
	s.byKey[string(pid.Key)] = ref
}

func (s *session) addLocal(role Role, p tsslib.Party) *local {
	l := &local{
		ref: partyRef{s.e.cfg.Self, role}, party: p,
		work:    make(chan tsslib.ParsedMessage, 4096),
		slots:   map[slotKey][32]byte{},
		pending: map[slotKey]*pendingBcast{},
		echoes:  map[slotKey]map[partyRef][32]byte{},
	}
	s.locals[role] = l
	return l
}

// maxInboxBytes bounds what one session queues from the network before its
// loop handles it. Honest traffic of a session is far below it (the
// largest messages, with Paillier proofs, are tens of KiB); a peer flooding
// a running session loses its own excess envelopes instead of blocking the
// engine's receive loop for every other session.
const maxInboxBytes = 32 << 20

// deliver queues d for the session without ever blocking the engine's
// receive loop: over the byte limit, or with the channel full, d is dropped.
func (s *session) deliver(d Delivery) {
	size := int64(envSize(d.Env))
	if s.inboxBytes.Add(size) > maxInboxBytes {
		s.inboxBytes.Add(-size)
		s.e.stats.inboxFull.Add(1)
		return
	}
	select {
	case s.inbox <- d:
	case <-s.done:
		s.inboxBytes.Add(-size)
		s.e.stats.finished.Add(1)
	default:
		s.inboxBytes.Add(-size)
		s.e.stats.inboxFull.Add(1)
	}
}

func (s *session) abort(err error, reason string, culprits ...partyRef) *AbortError {
	nodes := make([]pki.NodeID, 0, len(culprits))
	for _, c := range culprits {
		nodes = append(nodes, c.Node)
	}
	return &AbortError{Session: s.id, Protocol: s.proto, Culprits: uniqueSorted(nodes), Reason: reason, Err: err}
}

// forward relays a tss-lib end channel into the session's result channel.
func forward[T any](s *session, role Role, ch <-chan T) {
	go func() {
		select {
		case v := <-ch:
			select {
			case s.results <- roleResult{role, v}:
			case <-s.done:
			}
		case <-s.done:
		}
	}()
}

func (s *session) worker(l *local) {
	defer func() {
		if r := recover(); r != nil {
			select {
			case s.errs <- workerErr{role: l.ref.Role, pan: r}:
			default:
			}
		}
	}()
	start := true
	for {
		var m tsslib.ParsedMessage
		if !start {
			var ok bool
			select {
			case m, ok = <-l.work:
				if !ok {
					return
				}
			case <-s.done:
				return
			}
		}
		var terr *tsslib.Error
		var from partyRef
		func() {
			defer func() {
				if r := recover(); r != nil {
					panic(fmt.Sprintf("tss-lib panicked on message from %s: %v", from, r))
				}
			}()
			if start {
				terr = l.party.Start()
				return
			}
			from = s.byKey[string(m.GetFrom().Key)]
			_, terr = l.party.Update(m)
		}()
		start = false
		if terr != nil {
			select {
			case s.errs <- workerErr{role: l.ref.Role, err: terr, from: from}:
			case <-s.done:
			}
			return
		}
	}
}

// run drives the session until every local party finished (and the confirm
// phase agreed), an abort, or ctx ends. It returns results by role.
func (s *session) run(ctx context.Context) (res map[Role]any, agreed []byte, err error) {
	if err := s.e.register(s); err != nil {
		return nil, nil, err
	}
	s.ctx = ctx
	defer func() {
		close(s.done)
		// A worker may be inside a tss-lib round (which waits for its own
		// goroutines) using the share's secrets: wait until it is out.
		s.workers.Wait()
		s.e.unregister(s.id)
		if err != nil {
			s.e.fail(s, err)
		}
	}()
	for _, l := range s.locals {
		s.workers.Go(func() { s.worker(l) })
	}
	if len(s.locals) == 0 {
		if err := s.maybeConfirm(); err != nil {
			return nil, nil, err
		}
	}
	for {
		if s.allFinished() {
			if agreed, ok, err := s.confirmed(); err != nil {
				s.broadcastAbort(err)
				return nil, nil, err
			} else if ok {
				res = map[Role]any{}
				for r, l := range s.locals {
					res[r] = l.result
				}
				return res, agreed, nil
			}
		}
		var aerr *AbortError
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); errors.Is(cause, ErrWithdrawn) {
				// This node ended the session on purpose (a presignature
				// destroyed unused): nobody is to blame.
				aerr = s.abort(cause, "withdrawn by "+string(s.e.cfg.Self))
			} else {
				aerr = s.abort(fmt.Errorf("%w: %v", ErrTimeout, ctx.Err()), "deadline", s.waitingFor()...)
			}
		case d := <-s.inbox:
			s.inboxBytes.Add(-int64(envSize(d.Env)))
			aerr = s.handle(d)
		case m := <-s.out:
			aerr = s.send(m)
		case r := <-s.results:
			l := s.locals[r.role]
			l.finished, l.result = true, r.val
			if err := s.maybeConfirm(); err != nil {
				aerr = s.abort(ErrProtocol, err.Error())
			}
		case we := <-s.errs:
			aerr = s.fromWorker(we)
		}
		if aerr != nil {
			if !errors.Is(aerr, ErrPeerAborted) {
				s.broadcastAbort(aerr)
			}
			return nil, nil, aerr
		}
	}
}

func (s *session) allFinished() bool {
	for _, l := range s.locals {
		if !l.finished {
			return false
		}
	}
	return true
}

func (s *session) fromWorker(we workerErr) *AbortError {
	if we.pan != nil {
		return s.abort(ErrProtocol, fmt.Sprint(we.pan))
	}
	var culprits []partyRef
	for _, c := range we.err.Culprits() {
		if c == nil {
			continue
		}
		if ref, ok := s.byKey[string(c.Key)]; ok {
			culprits = append(culprits, ref)
		}
	}
	return s.abort(fmt.Errorf("%w: %w", ErrProtocol, we.err), fmt.Sprintf("tss-lib round %d", we.err.Round()), culprits...)
}

// waitingFor names the parties this node is still waiting on at a deadline:
// senders whose messages tss-lib lacks and never arrived here, and parties
// whose echoes or confirmations are missing.
func (s *session) waitingFor() []partyRef {
	var out []partyRef
	for _, l := range s.locals {
		if l.finished {
			continue
		}
		held := map[partyRef]bool{}
		for k, p := range l.pending {
			held[k.from] = true
			for q := range p.need {
				out = append(out, q)
			}
		}
		for _, pid := range l.party.WaitingFor() {
			if ref, ok := s.byKey[string(pid.Key)]; ok && !held[ref] {
				out = append(out, ref)
			}
		}
	}
	if s.confirm != nil && s.allFinished() {
		for _, r := range s.confirm.senders {
			if _, ok := s.confirms[r]; !ok && r.Node != s.e.cfg.Self {
				out = append(out, r)
			}
		}
	}
	return out
}

func (s *session) sendEnv(env *Envelope) error {
	tr := s.e.cfg.Transport
	send := func() error { return tr.Send(s.ctx, env.To, env) }
	if s.hook != nil {
		return s.hook(env, send)
	}
	return send()
}

func (s *session) envelope(typ string, from, to partyRef, bcast bool, payload []byte) *Envelope {
	return &Envelope{Wallet: s.wallet, Session: s.id, Type: typ, From: from.Node, FromRole: from.Role,
		To: to.Node, ToRole: to.Role, Broadcast: bcast, Payload: payload}
}

// send turns one outgoing tss-lib message into envelopes, routed by our
// spec table and the session's committee (never by the payload).
func (s *session) send(m tsslib.Message) *AbortError {
	from, ok := s.byKey[string(m.GetFrom().Key)]
	if !ok {
		return s.abort(ErrProtocol, "outgoing message from unknown local party")
	}
	wire, routing, err := m.WireBytes()
	if err != nil {
		return s.abort(ErrProtocol, "encode outgoing: "+err.Error())
	}
	sp, ok := s.spec[m.Type()]
	if !ok {
		return s.abort(ErrProtocol, "outgoing message of unknown type "+m.Type())
	}
	var to []partyRef
	if routing.To == nil {
		for ref := range s.members {
			if sp.to.has(ref.Role) && ref != from {
				to = append(to, ref)
			}
		}
	} else {
		for _, pid := range routing.To {
			if ref, ok := s.byKey[string(pid.Key)]; ok && ref != from && sp.to.has(ref.Role) {
				to = append(to, ref)
			}
		}
	}
	sortRefs(to)
	for _, r := range to {
		if err := s.sendEnv(s.envelope(m.Type(), from, r, sp.broadcast, wire)); err != nil {
			if ctxErr := s.ctx.Err(); ctxErr != nil {
				return nil // the deadline branch reports it
			}
			return s.abort(ErrProtocol, "send: "+err.Error())
		}
	}
	return nil
}

func sortRefs(rs []partyRef) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Node != rs[j].Node {
			return rs[i].Node < rs[j].Node
		}
		return rs[i].Role < rs[j].Role
	})
}

// recipients of a broadcast of type sp from sender, other than exclude.
func (s *session) recipients(sp msgSpec, sender partyRef, exclude partyRef) []partyRef {
	var out []partyRef
	for ref := range s.members {
		if sp.to.has(ref.Role) && ref != sender && ref != exclude {
			out = append(out, ref)
		}
	}
	sortRefs(out)
	return out
}

func (s *session) handle(d Delivery) *AbortError {
	env := d.Env
	from := partyRef{d.From, env.FromRole}
	if _, ok := s.members[from]; !ok {
		s.e.stats.nonMember.Add(1)
		return nil
	}
	if env.Wallet != s.wallet {
		s.e.stats.wrongWallet.Add(1)
		return nil
	}
	if env.Type == TypePeerAbort {
		// The peer's text is untrusted: quoted, so it cannot forge lines
		// in logs or audit events.
		return s.abort(ErrPeerAborted, fmt.Sprintf("%s aborted: %q", from, truncate(env.Payload, 200)))
	}
	if env.Type == TypeConfirm {
		return s.handleConfirm(from, env)
	}
	l, ok := s.locals[env.ToRole]
	if !ok {
		s.e.stats.misrouted.Add(1)
		return nil
	}
	if env.Type == TypeEcho {
		return s.handleEcho(l, from, env)
	}
	sp, ok := s.spec[env.Type]
	if !ok || !sp.from.has(from.Role) || !sp.to.has(l.ref.Role) || env.Broadcast != sp.broadcast {
		return s.abort(ErrBadMessage, fmt.Sprintf("unexpected message %q (broadcast=%v) from %s", env.Type, env.Broadcast, from), from)
	}
	h := sha256.Sum256(env.Payload)
	key := slotKey{env.Type, from}
	if prev, ok := l.slots[key]; ok {
		if prev == h {
			s.e.stats.duplicate.Add(1)
			return nil
		}
		return s.abort(ErrEquivocation, fmt.Sprintf("two different %s from %s", short(env.Type), from), from)
	}
	l.slots[key] = h
	msg, err := tsslib.ParseWireMessage(env.Payload, s.members[from], sp.broadcast)
	if err != nil {
		return s.abort(ErrBadMessage, fmt.Sprintf("unparseable %s from %s: %v", short(env.Type), from, err), from)
	}
	if msg.Type() != env.Type || !msg.ValidateBasic() {
		return s.abort(ErrBadMessage, fmt.Sprintf("%s from %s: type mismatch or failed basic validation", short(env.Type), from), from)
	}
	if err := precheck(msg, s.threshold(env.Type)); err != nil {
		return s.abort(ErrBadMessage, fmt.Sprintf("%s from %s: %v", short(env.Type), from, err), from)
	}
	if s.check != nil {
		if err := s.check(msg, from); err != nil {
			return s.abort(ErrBadMessage, fmt.Sprintf("%s from %s: %v", short(env.Type), from, err), from)
		}
	}
	s.e.stats.delivered.Add(1)
	if !sp.broadcast {
		l.work <- msg
		return nil
	}
	// Echo what we got to every other recipient, then wait for theirs.
	p := &pendingBcast{msg: msg, hash: h, need: map[partyRef]bool{}}
	for _, q := range s.recipients(sp, from, l.ref) {
		p.need[q] = true
		e := echo{Type: env.Type, Sender: from, Hash: h}
		if err := s.sendEnv(s.envelope(TypeEcho, l.ref, q, false, e.marshal())); err != nil && s.ctx.Err() == nil {
			return s.abort(ErrProtocol, "send echo: "+err.Error())
		}
	}
	for q, eh := range l.echoes[key] {
		if eh != h {
			return s.abort(ErrEquivocation, fmt.Sprintf("%s from %s: %s saw a different broadcast", short(env.Type), from, q), from)
		}
		delete(p.need, q)
	}
	if len(p.need) == 0 {
		l.work <- msg
		return nil
	}
	l.pending[key] = p
	return nil
}

func (s *session) handleEcho(l *local, q partyRef, env *Envelope) *AbortError {
	e, err := unmarshalEcho(env.Payload)
	if err != nil {
		return s.abort(ErrBadMessage, "malformed echo from "+q.String(), q)
	}
	sp, ok := s.spec[e.Type]
	_, senderOK := s.members[e.Sender]
	if !ok || !sp.broadcast || !senderOK || !sp.from.has(e.Sender.Role) || !sp.to.has(q.Role) ||
		!sp.to.has(l.ref.Role) || q == e.Sender || e.Sender == l.ref {
		return s.abort(ErrBadMessage, fmt.Sprintf("echo from %s about %q of %q is not expected", q, e.Type, e.Sender.String()), q)
	}
	key := slotKey{e.Type, e.Sender}
	m := l.echoes[key]
	if m == nil {
		m = map[partyRef][32]byte{}
		l.echoes[key] = m
	}
	if prev, ok := m[q]; ok {
		if prev == e.Hash {
			s.e.stats.duplicate.Add(1)
			return nil
		}
		return s.abort(ErrEquivocation, fmt.Sprintf("two different echoes from %s", q), q)
	}
	m[q] = e.Hash
	if p := l.pending[key]; p != nil {
		if p.hash != e.Hash {
			return s.abort(ErrEquivocation, fmt.Sprintf("%s from %s: %s saw a different broadcast", short(e.Type), e.Sender, q), e.Sender)
		}
		delete(p.need, q)
		if len(p.need) == 0 {
			delete(l.pending, key)
			l.work <- p.msg
		}
	} else if h, ok := l.slots[key]; ok && h != e.Hash {
		return s.abort(ErrEquivocation, fmt.Sprintf("%s from %s: %s saw a different broadcast", short(e.Type), e.Sender, q), e.Sender)
	}
	return nil
}

// maybeConfirm sends this node's result digests once all locals finished.
func (s *session) maybeConfirm() error {
	if s.confirm == nil || s.sentConf || !s.allFinished() {
		return nil
	}
	s.sentConf = true
	for _, snd := range s.confirm.senders {
		if snd.Node != s.e.cfg.Self {
			continue
		}
		var res any
		if l := s.locals[snd.Role]; l != nil {
			res = l.result
		}
		d := s.confirm.digest(snd.Role, res)
		s.confirms[snd] = d
		for _, rcv := range s.confirm.receivers {
			if rcv == snd {
				continue
			}
			if err := s.sendEnv(s.envelope(TypeConfirm, snd, rcv, true, d)); err != nil && s.ctx.Err() == nil {
				return err
			}
		}
	}
	return nil
}

func (s *session) isConfirmSender(r partyRef) bool {
	for _, x := range s.confirm.senders {
		if x == r {
			return true
		}
	}
	return false
}

func (s *session) handleConfirm(from partyRef, env *Envelope) *AbortError {
	if s.confirm == nil || !s.isConfirmSender(from) {
		return s.abort(ErrBadMessage, "unexpected confirmation from "+from.String(), from)
	}
	if prev, ok := s.confirms[from]; ok {
		if bytes.Equal(prev, env.Payload) {
			s.e.stats.duplicate.Add(1)
			return nil
		}
		return s.abort(ErrEquivocation, "two different confirmations from "+from.String(), from)
	}
	s.confirms[from] = append([]byte(nil), env.Payload...)
	return nil
}

// confirmed reports whether the confirm phase is complete and agreed. A
// node that is not a receiver is done once it sent its digests.
func (s *session) confirmed() ([]byte, bool, *AbortError) {
	if s.confirm == nil {
		return nil, true, nil
	}
	if !s.sentConf {
		return nil, false, nil
	}
	receiver := false
	for _, r := range s.confirm.receivers {
		if r.Node == s.e.cfg.Self {
			receiver = true
		}
	}
	var ref []byte
	for _, snd := range s.confirm.senders {
		if d, ok := s.confirms[snd]; ok && snd.Node == s.e.cfg.Self {
			ref = d
		}
	}
	if !receiver {
		return ref, true, nil
	}
	for _, snd := range s.confirm.senders {
		if _, ok := s.confirms[snd]; !ok {
			return nil, false, nil
		}
	}
	if ref == nil {
		ref = s.confirms[s.confirm.senders[0]]
	}
	var bad []partyRef
	for _, snd := range s.confirm.senders {
		if !bytes.Equal(s.confirms[snd], ref) {
			bad = append(bad, snd)
		}
	}
	if len(bad) > 0 {
		return nil, false, s.abort(ErrInconsistentResult, "parties finished with different results", bad...)
	}
	return ref, true, nil
}

func (s *session) broadcastAbort(err error) {
	msg := []byte(err.Error())
	for ref := range s.members {
		if ref.Node == s.e.cfg.Self {
			continue
		}
		from := partyRef{s.e.cfg.Self, RoleMain}
		for r := range s.locals {
			from.Role = r
			break
		}
		if _, ok := s.members[from]; !ok {
			continue
		}
		env := s.envelope(TypePeerAbort, from, ref, false, msg)
		ctx, cancel := context.WithTimeout(context.Background(), abortSendTimeout)
		_ = s.e.cfg.Transport.Send(ctx, ref.Node, env)
		cancel()
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

func short(typ string) string {
	if i := bytes.LastIndexByte([]byte(typ), '.'); i >= 0 {
		return typ[i+1:]
	}
	return typ
}

// partyKey derives the tss-lib party key of node in a role for a wallet and
// the session that creates the share. tss-lib hashes all party keys into
// its proofs' ssid, so this binds keygen and resharing proofs to the session.
func partyKey(wallet string, session SessionID, node pki.NodeID, role Role) *big.Int {
	h := sha256.New()
	h.Write([]byte("custody/tss/party-key/v1\x00"))
	h.Write([]byte(wallet))
	h.Write([]byte{0})
	h.Write(session[:])
	h.Write([]byte(node))
	h.Write([]byte{0, byte(role)})
	k := new(big.Int).SetBytes(h.Sum(nil))
	n1 := new(big.Int).Sub(tsslib.S256().Params().N, big.NewInt(1))
	return k.Mod(k, n1).Add(k, big.NewInt(1))
}
