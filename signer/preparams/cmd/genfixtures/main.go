// Command genfixtures generates tss-lib pre-params test fixtures (Paillier keys
// and safe primes) for the signer tests. The output carries
// preparams.FixtureMarker and is refused by any non-test binary.
//
//	go run ./signer/preparams/cmd/genfixtures -n 9 -out signer/preparams/testdata/preparams.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/bnb-chain/tss-lib/v2/ecdsa/keygen"

	"github.com/custody-dev/custody/signer/preparams"
)

func main() {
	n := flag.Int("n", 9, "number of pre-params to generate")
	out := flag.String("out", "signer/preparams/testdata/preparams.json", "output file")
	check := flag.String("check", "", "only try to load this fixture file (shows the refusal outside tests)")
	flag.Parse()
	if *check != "" {
		if _, err := preparams.LoadFixtures(*check); err != nil {
			fmt.Fprintln(os.Stderr, "genfixtures:", err)
			os.Exit(1)
		}
		fmt.Println("loaded")
		return
	}
	if err := run(*n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "genfixtures:", err)
		os.Exit(1)
	}
}

func run(n int, out string) error {
	f := preparams.FixtureFile{Marker: preparams.FixtureMarker}
	for i := 0; i < n; i++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		p, err := keygen.GeneratePreParamsWithContext(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("generate %d: %w", i, err)
		}
		if err := preparams.Validate(p); err != nil {
			return fmt.Errorf("generated %d: %w", i, err)
		}
		f.PreParams = append(f.PreParams, *p)
		fmt.Fprintf(os.Stderr, "pre-params %d/%d in %s\n", i+1, n, time.Since(start).Round(time.Millisecond))
	}
	raw, err := json.MarshalIndent(&f, "", " ")
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
