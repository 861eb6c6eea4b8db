//go:build !race

package ledger_test

// propertyRuns: see race_test.go.
const propertyRuns = 60
