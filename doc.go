// Package custody is the root of the custody module: an open-source custody
// signer service. It holds no code; see README.md for the packages and
// docs/architecture.md for how they fit together. Its test,
// TestLayering, holds the import layering of the whole module in one table.
package custody
