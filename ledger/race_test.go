//go:build race

package ledger_test

// propertyRuns is smaller under the race detector: the property test is
// single-goroutine FSM work, which the detector slows ~10x without finding
// anything; the full count runs without it (make soak runs more).
const propertyRuns = 12
