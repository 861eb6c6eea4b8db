package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"time"

	"github.com/bnb-chain/tss-lib/v2/common"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"

	"github.com/custody-dev/custody/signer/preparams"
)

// PlainConfig is the plain tss-lib baseline: a 3-party keygen (threshold
// 1) on freshly generated pre-params, then Sequential single 2-of-3
// sessions one after the other, then Count sessions Concurrency at a time.
type PlainConfig struct {
	Sequential  int
	Concurrency int
	Count       int
	// Progress receives a line per phase (nil: discarded).
	Progress io.Writer
}

// PlainResult is what the baseline measured.
type PlainResult struct {
	// PreParamsSeconds is the wall time to generate the three parties'
	// pre-params (concurrently); KeygenSeconds the keygen after it.
	PreParamsSeconds float64 `json:"preparams_seconds"`
	KeygenSeconds    float64 `json:"keygen_seconds"`
	// Single are the sequential sessions' latencies.
	Single Stats `json:"single_session"`
	// Concurrency sessions at a time: Count signatures in Seconds.
	Concurrency int     `json:"concurrency"`
	Count       int     `json:"count"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"signatures_per_s"`
}

// plainParty is one keygen party's output.
type plainParty struct {
	id   *tsslib.PartyID
	save keygen.LocalPartySaveData
}

// Plain runs the baseline: tss-lib's parties in this process wired by
// channels, with no envelopes, echo, checks, transport or ledger: what
// custody's signing is compared to.
func Plain(ctx context.Context, cfg PlainConfig) (PlainResult, error) {
	res := PlainResult{Concurrency: cfg.Concurrency, Count: cfg.Count}
	if cfg.Sequential < 1 || cfg.Concurrency < 1 || cfg.Count < 1 {
		return res, errors.New("bench: the baseline needs sequential, concurrency and count ≥ 1")
	}
	say := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}
	say("baseline: generating tss-lib pre-params for 3 parties (safe primes; about 30 s per party on two loaded cores, generated concurrently)")
	t0 := time.Now()
	pre := make([]*keygen.LocalPreParams, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range pre {
		wg.Go(func() {
			pre[i], errs[i] = keygen.GeneratePreParamsWithContext(ctx)
			if errs[i] == nil {
				errs[i] = preparams.Validate(pre[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("bench: pre-params: %w", err)
	}
	res.PreParamsSeconds = time.Since(t0).Seconds()
	say("baseline: pre-params in %.1f s; 3-party keygen (threshold 1)", res.PreParamsSeconds)
	t0 = time.Now()
	parties, err := plainKeygen(ctx, pre)
	if err != nil {
		return res, err
	}
	res.KeygenSeconds = time.Since(t0).Seconds()
	signers := parties[:2]
	say("baseline: keygen in %.1f s; %d single 2-of-3 sessions", res.KeygenSeconds, cfg.Sequential)
	var single []time.Duration
	for range cfg.Sequential {
		t0 := time.Now()
		if err := plainSign(ctx, signers); err != nil {
			return res, err
		}
		single = append(single, time.Since(t0))
	}
	res.Single = statsOf(single)
	say("baseline: %d sessions at concurrency %d", cfg.Count, cfg.Concurrency)
	work := make(chan struct{}, cfg.Count)
	for range cfg.Count {
		work <- struct{}{}
	}
	close(work)
	var mu sync.Mutex
	var signErr error
	t0 = time.Now()
	for range cfg.Concurrency {
		wg.Go(func() {
			for range work {
				if err := plainSign(ctx, signers); err != nil {
					mu.Lock()
					signErr = errors.Join(signErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if signErr != nil {
		return res, signErr
	}
	res.Seconds = time.Since(t0).Seconds()
	res.PerSecond = float64(cfg.Count) / res.Seconds
	return res, nil
}

// route delivers tss-lib's outgoing messages to the parties until every
// party ends (or one fails, or ctx ends).
func route(ctx context.Context, parties []tsslib.Party, out <-chan tsslib.Message, ended <-chan struct{}) error {
	errs := make(chan error, 64)
	update := func(p tsslib.Party, bz []byte, from *tsslib.PartyID, bc bool) {
		if _, err := p.UpdateFromBytes(bz, from, bc); err != nil {
			select {
			case errs <- err:
			default:
			}
		}
	}
	for _, p := range parties {
		go func() {
			if err := p.Start(); err != nil {
				errs <- err
			}
		}()
	}
	for done := 0; done < len(parties); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return fmt.Errorf("bench: tss-lib: %w", err)
		case m := <-out:
			bz, r, err := m.WireBytes()
			if err != nil {
				return err
			}
			if r.To == nil {
				for _, p := range parties {
					if p.PartyID().Index != r.From.Index {
						go update(p, bz, r.From, true)
					}
				}
			} else {
				for _, to := range r.To {
					go update(parties[to.Index], bz, r.From, false)
				}
			}
		case <-ended:
			done++
		}
	}
	return nil
}

// collect passes each party's output on end to keep and signals ended,
// once per party (cap(ended)).
func collect[T any](ctx context.Context, end <-chan T, ended chan<- struct{}, keep func(T)) {
	for range cap(ended) {
		select {
		case v := <-end:
			keep(v)
			ended <- struct{}{}
		case <-ctx.Done():
			return
		}
	}
}

func plainKeygen(ctx context.Context, pre []*keygen.LocalPreParams) ([]plainParty, error) {
	var un tsslib.UnSortedPartyIDs
	for i := range pre {
		un = append(un, tsslib.NewPartyID(fmt.Sprint(i+1), fmt.Sprint(i+1), big.NewInt(int64(i+1))))
	}
	ids := tsslib.SortPartyIDs(un)
	pctx := tsslib.NewPeerContext(ids)
	out := make(chan tsslib.Message, 1024)
	end := make(chan *keygen.LocalPartySaveData, len(ids))
	ended := make(chan struct{}, len(ids))
	parties := make([]tsslib.Party, len(ids))
	for i, id := range ids {
		params := tsslib.NewParameters(tsslib.S256(), pctx, id, len(ids), 1)
		parties[id.Index] = keygen.NewLocalParty(params, out, end, *pre[i])
	}
	saves := make([]plainParty, 0, len(ids))
	var mu sync.Mutex
	go collect(ctx, end, ended, func(s *keygen.LocalPartySaveData) {
		mu.Lock()
		saves = append(saves, plainParty{save: *s})
		mu.Unlock()
	})
	if err := route(ctx, parties, out, ended); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range saves {
		idx, err := saves[i].save.OriginalIndex()
		if err != nil {
			return nil, err
		}
		saves[i].id = ids[idx]
	}
	return saves, nil
}

// plainSign signs a random digest with signers (threshold 1: two).
func plainSign(ctx context.Context, signers []plainParty) error {
	var un tsslib.UnSortedPartyIDs
	byKey := map[string]plainParty{}
	for _, s := range signers {
		id := tsslib.NewPartyID(s.id.Id, s.id.Moniker, new(big.Int).SetBytes(s.id.Key))
		un = append(un, id)
		byKey[s.id.Id] = s
	}
	ids := tsslib.SortPartyIDs(un)
	pctx := tsslib.NewPeerContext(ids)
	var digest [32]byte
	if _, err := rand.Read(digest[:]); err != nil {
		return err
	}
	out := make(chan tsslib.Message, 1024)
	end := make(chan *common.SignatureData, len(ids))
	ended := make(chan struct{}, len(ids))
	parties := make([]tsslib.Party, len(ids))
	for _, id := range ids {
		params := tsslib.NewParameters(tsslib.S256(), pctx, id, len(ids), 1)
		parties[id.Index] = signing.NewLocalParty(new(big.Int).SetBytes(digest[:]), params, byKey[id.Id].save, out, end, 32)
	}
	go collect(ctx, end, ended, func(*common.SignatureData) {})
	return route(ctx, parties, out, ended)
}
