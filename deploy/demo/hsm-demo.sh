#!/usr/bin/env bash
# HSM demo: provisions throw-away SoftHSM2 tokens in a temporary directory and
# drives the real custody binary through the HSM layer: KEK creation, sealing
# and opening a key share (and refusing tampered input), and a native
# secp256k1 key that signs inside the token, checked outside it.
#
# Usage: CUSTODY=path/to/custody deploy/demo/hsm-demo.sh   (make demo does this)
# Exits non-zero on any failure; always removes its temporary directory.
set -euo pipefail

CUSTODY=${CUSTODY:-custody}
if ! command -v "$CUSTODY" >/dev/null 2>&1; then
	echo "hsm-demo: custody binary not found (set CUSTODY=...; make demo builds it)" >&2
	exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/custody-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Never inherit a PIN or SoftHSM config from the caller's shell.
unset CUSTODY_HSM_PIN CUSTODY_HSM_SO_PIN CUSTODY_HSM_PIN_FILE SOFTHSM2_CONF

step=0
say() { step=$((step + 1)); printf '\n\033[1m== %d. %s\033[0m\n' "$step" "$*"; }
run() { printf '$ custody %s\n' "$*"; "$CUSTODY" "$@"; }
# expect_fail runs a command that must fail, and shows its one-line error.
expect_fail() {
	printf '$ custody %s   (must fail)\n' "$*"
	if "$CUSTODY" "$@" >"$WORK/out" 2>&1; then
		echo "hsm-demo: FAILED: the command above succeeded but must not" >&2
		exit 1
	fi
	printf '   refused as expected: %s\n' "$(tail -n1 "$WORK/out")"
}
field() { awk -v k="$1:" '$1 == k { print $2 }' "$2"; }

say "Provision three SoftHSM2 tokens in $WORK/hsm (isolated: its own softhsm2.conf)"
printf '$ custody softhsm init --dir %s --tokens node1,node2,node3\n' "$WORK/hsm"
"$CUSTODY" softhsm init --dir "$WORK/hsm" --tokens node1,node2,node3 | tee "$WORK/env"
# shellcheck disable=SC1090
source <(grep '^export ' "$WORK/env")
echo "(PINs were generated into files of mode 0600; no PIN is printed or passed as an argument)"

say "Inspect the module and token node1"
run hsm info --token-label node1

say "Create the AES-256 key-encryption key (KEK) inside node1 and node2"
run hsm init-kek --token-label node1
run hsm init-kek --token-label node2
expect_fail hsm init-kek --token-label node1

say "Seal a (pretend) key share with node1's KEK, bound to its purpose by the AAD"
head -c 64 /dev/urandom >"$WORK/share.bin"
run hsm seal --token-label node1 --in "$WORK/share.bin" --out "$WORK/share.sealed" --aad "wallet=w1/party=1/v=1"
printf 'sealed blob (%d bytes), header: ' "$(wc -c <"$WORK/share.sealed")"
head -c 4 "$WORK/share.sealed" | od -An -c | tr -s ' '

say "Open it again and compare"
run hsm open --token-label node1 --in "$WORK/share.sealed" --out "$WORK/share.opened" --aad "wallet=w1/party=1/v=1"
cmp "$WORK/share.bin" "$WORK/share.opened"
echo "round trip OK: the opened bytes equal the original"

say "Tampering is refused"
expect_fail hsm open --token-label node1 --in "$WORK/share.sealed" --out "$WORK/x1" --aad "wallet=w1/party=2/v=1"
cp "$WORK/share.sealed" "$WORK/share.flipped"
printf '\xff' | dd of="$WORK/share.flipped" bs=1 seek=40 conv=notrunc status=none
expect_fail hsm open --token-label node1 --in "$WORK/share.flipped" --out "$WORK/x2" --aad "wallet=w1/party=1/v=1"
expect_fail hsm open --token-label node2 --in "$WORK/share.sealed" --out "$WORK/x3" --aad "wallet=w1/party=1/v=1"
head -c 20 "$WORK/share.sealed" >"$WORK/share.truncated"
expect_fail hsm open --token-label node1 --in "$WORK/share.truncated" --out "$WORK/x4" --aad "wallet=w1/party=1/v=1"
echo "not-the-pin" >"$WORK/wrong.pin" && chmod 600 "$WORK/wrong.pin"
expect_fail hsm info --token-label node1 --pin-file "$WORK/wrong.pin"
for f in x1 x2 x3 x4; do [ ! -e "$WORK/$f" ] || { echo "hsm-demo: FAILED: a refused open wrote $f" >&2; exit 1; }; done

say "Generate a secp256k1 key pair inside node1 (private key sensitive, never extractable)"
run hsm keygen --token-label node1 --label btc-hot --curve secp256k1 | tee "$WORK/key"
PUB=$(field public_key "$WORK/key")

say "Sign a transaction digest inside the token (verified and low-S before it is returned)"
printf 'withdraw 0.5 BTC to bc1q...' >"$WORK/tx"
DIGEST=$(sha256sum "$WORK/tx" | cut -d' ' -f1)
run hsm sign --token-label node1 --label btc-hot --digest "$DIGEST" | tee "$WORK/sig"
SIG=$(field signature "$WORK/sig")
[ "$(field low_s "$WORK/sig")" = true ] || { echo "hsm-demo: FAILED: high-S signature" >&2; exit 1; }

say "Verify the signature in software with btcec (no token involved)"
run hsm verify --curve secp256k1 --pubkey "$PUB" --digest "$DIGEST" --sig "$SIG"
OTHER=$(printf 'withdraw 5 BTC to bc1q...' | sha256sum | cut -d' ' -f1)
expect_fail hsm verify --curve secp256k1 --pubkey "$PUB" --digest "$OTHER" --sig "$SIG"

printf '\n\033[1mHSM demo passed.\033[0m Temporary tokens in %s are removed now.\n' "$WORK"
