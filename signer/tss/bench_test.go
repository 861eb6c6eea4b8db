package tss_test

import (
	"fmt"
	"math/big"
	"sync"
	"testing"

	"github.com/bnb-chain/tss-lib/v2/common"
	"github.com/bnb-chain/tss-lib/v2/ecdsa/signing"
	tsslib "github.com/bnb-chain/tss-lib/v2/tss"

	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/signer/tss"
	"github.com/custody-dev/custody/signer/tss/tsstest"
)

// plainSign runs tss-lib signing with parties wired directly by channels:
// no envelopes, echo, dedup or checks. It is the baseline of the benchmarks.
func plainSign(b testing.TB, shares map[pki.NodeID]*tss.Share, signers []pki.NodeID, digest [32]byte) {
	info := shares[signers[0]].Info()
	keys := map[pki.NodeID][]byte{}
	for _, m := range info.Members {
		keys[m.Node] = m.Key
	}
	var un tsslib.UnSortedPartyIDs
	byNode := map[pki.NodeID]*tsslib.PartyID{}
	for _, n := range signers {
		pid := tsslib.NewPartyID(string(n), string(n), new(big.Int).SetBytes(keys[n]))
		un = append(un, pid)
		byNode[n] = pid
	}
	sorted := tsslib.SortPartyIDs(un)
	pctx := tsslib.NewPeerContext(sorted)
	out := make(chan tsslib.Message, 1024)
	end := make(chan *common.SignatureData, len(signers))
	errs := make(chan *tsslib.Error, len(signers))
	parties := make([]tsslib.Party, len(sorted))
	for _, n := range signers {
		pid := byNode[n]
		params := tsslib.NewParameters(tsslib.S256(), pctx, pid, len(sorted), info.Threshold)
		parties[pid.Index] = signing.NewLocalParty(new(big.Int).SetBytes(digest[:]), params, shares[n].Data, out, end, 32)
	}
	for _, p := range parties {
		go func() {
			if err := p.Start(); err != nil {
				errs <- err
			}
		}()
	}
	update := func(p tsslib.Party, bz []byte, from *tsslib.PartyID, bc bool) {
		if _, err := p.UpdateFromBytes(bz, from, bc); err != nil {
			errs <- err
		}
	}
	for done := 0; done < len(parties); {
		select {
		case err := <-errs:
			b.Fatal(err)
		case m := <-out:
			bz, r, err := m.WireBytes()
			if err != nil {
				b.Fatal(err)
			}
			if r.To == nil {
				for _, p := range parties {
					if p.PartyID().Index != r.From.Index {
						go update(p, bz, r.From, true)
					}
				}
			} else {
				go update(parties[r.To[0].Index], bz, r.From, false)
			}
		case <-end:
			done++
		}
	}
}

var (
	bench5Once   sync.Once
	bench5       *cluster
	bench5Shares map[pki.NodeID]*tss.Share
)

func benchWallet(b *testing.B, n int) (*cluster, map[pki.NodeID]*tss.Share, []pki.NodeID) {
	if n == 3 {
		c, s := shared2of3(b)
		return c, s, []pki.NodeID{"node1", "node2"}
	}
	bench5Once.Do(func() {
		ids := nodes(5)
		bench5 = newCluster(tsstest.NoCleanup(b), ids)
		bench5Shares = bench5.keygen(b, "wallet-bench5", ids, 2, preFor(ids, 0))
	})
	return bench5, bench5Shares, []pki.NodeID{"node1", "node3", "node5"}
}

// BenchmarkSignLatency: one signature at a time, engine vs plain tss-lib.
func BenchmarkSignLatency(b *testing.B) {
	for _, n := range []int{3, 5} {
		for _, mode := range []string{"plain", "engine"} {
			b.Run(fmt.Sprintf("%dof%d/%s", n/2+1, n, mode), func(b *testing.B) {
				c, shares, signers := benchWallet(b, n)
				d := digestOf("bench")
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if mode == "plain" {
						plainSign(b, shares, signers, d)
					} else {
						c.mustSign(b, shares, signers, d)
					}
				}
			})
		}
	}
}

// BenchmarkSignThroughput: k concurrent 2-of-3 sessions; reports sig/s.
func BenchmarkSignThroughput(b *testing.B) {
	for _, k := range []int{1, 2, 4, 8} {
		for _, mode := range []string{"plain", "engine"} {
			b.Run(fmt.Sprintf("sessions=%d/%s", k, mode), func(b *testing.B) {
				c, shares, signers := benchWallet(b, 3)
				d := digestOf("bench")
				var wg sync.WaitGroup
				work := make(chan struct{}, b.N)
				for i := 0; i < b.N; i++ {
					work <- struct{}{}
				}
				close(work)
				b.ResetTimer()
				for w := 0; w < k; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range work {
							if mode == "plain" {
								plainSign(b, shares, signers, d)
							} else {
								c.mustSign(b, shares, signers, d)
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sig/s")
			})
		}
	}
}
