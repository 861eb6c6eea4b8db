// Package hsm talks PKCS#11 (through github.com/miekg/pkcs11) to the HSM that
// protects a custody node's secrets: it opens a token, keeps a pool of logged-in
// sessions, seals data with an AES-256 key-encryption key (KEK) that never leaves
// the token, and signs with native EC keys exposed as crypto.Signer.
//
// It knows nothing about wallets or chains: callers decide what to seal and
// what to sign and pass an AAD that binds a sealed blob to its purpose.
//
// # Opening a token
//
// [Open] loads the module named by [Config.Module], selects exactly one token
// by label and/or serial (two tokens with the same label is an error: a share
// must never be sealed in the wrong token by accident) and logs in once. The
// PIN comes from [LoadPIN] (environment variable or file), never from argv.
//
// A module is C_Initialize'd once per process and shared, reference counted,
// by every [Token] opened on the same path; several tokens of one module (one
// per simulated party in a test) can be open at once. When the last Token of a
// module closes, the module is finalised, so a later Open re-reads the module's
// configuration (SoftHSM re-reads SOFTHSM2_CONF at that point).
//
// # Concurrency
//
// A *Token, and the *Sealer and *ECKey it hands out, are safe for concurrent
// use by many goroutines. Every operation borrows one PKCS#11 session from the
// token's pool for its whole duration, so a session is used by one goroutine
// at a time (PKCS#11 forbids interleaving two operations on one session). The
// pool grows to [Config.MaxSessions] sessions; further callers wait.
//
// # Failing closed
//
// An error that means the token or session is gone (device removed, token
// not present, session handle invalid, user not logged in) discards the
// session and is returned wrapped with [ErrTokenNotFound]; nothing is ever
// retried against another token or done in software instead.
//
// # Sealing
//
// [Sealer.Seal] encrypts with CKM_AES_GCM inside the token under a fresh
// random 96-bit IV, and returns a versioned blob (see docs/hsm.md for the
// byte layout). The blob header (magic, version, KEK id, IV) is authenticated
// together with the caller's AAD, so [Sealer.Open] tells apart a malformed
// blob, an unknown version, a blob of another KEK and a failed authentication
// (changed AAD or ciphertext).
//
// # Signing
//
// [ECKey] implements crypto.Signer over CKM_ECDSA for secp256k1 and P-256.
// Every signature is verified against the key's public key before it is
// returned; secp256k1 signatures are normalised to low-S first, because some
// HSM/OpenSSL combinations return high-S or even invalid signatures.
//
// [VerifySignature] is the same check for a signature from elsewhere, in
// software and strictly: canonical DER ([MarshalSignature]), r and s in
// range, low-S on secp256k1 ([Curve.IsLowS]), with public keys decoded by
// [ParsePublicKey].
package hsm
