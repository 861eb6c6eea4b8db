package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time with -ldflags "-X main.version=...".
var version = "dev"

type versionInfo struct {
	Version   string            `json:"version"`
	GoVersion string            `json:"go_version"`
	Platform  string            `json:"platform"`
	Deps      map[string]string `json:"deps,omitempty"`
}

// trackedDeps are the dependencies whose versions matter to an auditor: the
// threshold-signature library, the consensus library and the HSM binding.
var trackedDeps = []string{
	"github.com/bnb-chain/tss-lib/v2",
	"github.com/hashicorp/raft",
	"github.com/miekg/pkcs11",
	"github.com/ethereum/go-ethereum",
	"github.com/btcsuite/btcd",
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the custody version and the versions of its security-relevant dependencies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := versionInfo{
				Version:   version,
				GoVersion: runtime.Version(),
				Platform:  runtime.GOOS + "/" + runtime.GOARCH,
				Deps:      map[string]string{},
			}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					for _, want := range trackedDeps {
						if d.Path == want {
							info.Deps[d.Path] = d.Version
						}
					}
				}
			}
			return report(cmd, info, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "custody %s (%s, %s)\n", info.Version, info.GoVersion, info.Platform)
				for _, d := range trackedDeps {
					if v, ok := info.Deps[d]; ok {
						fmt.Fprintf(w, "  %s %s\n", d, v)
					}
				}
				return err
			})
		},
	}
}
