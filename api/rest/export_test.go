package rest

// ChainVerifications is how many client certificate chains the package's
// handlers verified so far (at the handshake not counted).
func ChainVerifications() int64 { return chainVerifications.Load() }
