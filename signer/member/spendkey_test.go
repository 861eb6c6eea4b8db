package member_test

import (
	"testing"

	"github.com/custody-dev/custody/chains"
	"github.com/custody-dev/custody/signer/watermark"
)

// TestSpendKeysAreWatermarkKeys: the member reserves a chain adapter's
// spend keys in its watermark by conversion, so both spell the same key the
// same way (a mismatch would let one nonce or outpoint be signed twice).
func TestSpendKeysAreWatermarkKeys(t *testing.T) {
	eth := chains.SpendKey{Kind: chains.KindETHNonce, Scope: "hot/1337", ID: "7"}
	if watermark.Key(eth) != watermark.ETHNonceKey("hot", 1337, 7) {
		t.Fatalf("eth: %+v vs %+v", eth, watermark.ETHNonceKey("hot", 1337, 7))
	}
	btc := chains.SpendKey{Kind: chains.KindBTCOutpoint, Scope: "cold", ID: "ab:1"}
	if watermark.Key(btc) != watermark.BTCOutpointKey("cold", "ab", 1) {
		t.Fatalf("btc: %+v vs %+v", btc, watermark.BTCOutpointKey("cold", "ab", 1))
	}
}
