// Package preparams provides tss-lib pre-parameters (Paillier keys and safe
// primes): a background pool that generates them from crypto/rand off the
// request path, validation, and committed test fixtures that only test
// binaries may load.
package preparams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"
)

// ErrEmpty is returned by Take when no pre-params are ready: callers fail
// the request rather than generate on the request path.
var ErrEmpty = errors.New("preparams: pool empty")

// Generator makes one set of pre-params; keygen.GeneratePreParamsWithContext
// (crypto/rand) in production.
type Generator func(ctx context.Context) (*keygen.LocalPreParams, error)

// Pool keeps up to Size validated pre-params, refilled by a background
// goroutine. The pool is in memory; a node that persists it must seal it
// like a share.
type Pool struct {
	ready chan *keygen.LocalPreParams
	gen   Generator
	errs  chan error
}

// NewPool starts filling a pool of size entries with gen (nil: crypto/rand
// generation in tss-lib) until ctx ends.
func NewPool(ctx context.Context, size int, gen Generator) *Pool {
	if gen == nil {
		gen = func(ctx context.Context) (*keygen.LocalPreParams, error) {
			return keygen.GeneratePreParamsWithContext(ctx)
		}
	}
	p := &Pool{ready: make(chan *keygen.LocalPreParams, size), gen: gen, errs: make(chan error, 1)}
	go p.fill(ctx)
	return p
}

func (p *Pool) fill(ctx context.Context) {
	for ctx.Err() == nil {
		pp, err := p.gen(ctx)
		if err == nil {
			err = Validate(pp)
		}
		if err != nil {
			select {
			case p.errs <- fmt.Errorf("preparams: generate: %w", err):
			default:
			}
			select { // back off, then retry
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case p.ready <- pp:
		case <-ctx.Done():
			return
		}
	}
}

// Take returns ready pre-params without waiting, or ErrEmpty.
func (p *Pool) Take() (*keygen.LocalPreParams, error) {
	select {
	case pp := <-p.ready:
		return pp, nil
	default:
		return nil, ErrEmpty
	}
}

// Wait returns pre-params, waiting until ctx ends; for ceremonies that may
// block, never for request handling.
func (p *Pool) Wait(ctx context.Context) (*keygen.LocalPreParams, error) {
	select {
	case pp := <-p.ready:
		return pp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Drain takes every set ready now without waiting (a node returning its
// unused sets to a devnet Cache at shutdown).
func (p *Pool) Drain() []*keygen.LocalPreParams {
	var out []*keygen.LocalPreParams
	for {
		select {
		case pp := <-p.ready:
			out = append(out, pp)
		default:
			return out
		}
	}
}

// Len reports how many pre-params are ready.
func (p *Pool) Len() int { return len(p.ready) }

// Err returns the latest generation failure, if any, without waiting.
func (p *Pool) Err() error {
	select {
	case err := <-p.errs:
		return err
	default:
		return nil
	}
}
