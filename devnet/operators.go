package devnet

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
)

// The devnet's operators act through the operator CLI, as treasury
// operators do: `custody login` writes each one's profile (in
// DIR/operators, CUSTODY_CONFIG_DIR), and every approval, rejection and
// governance change is signed on the operator's device by the CLI and
// sent to a node's operator API.

// operatorEnv is the environment of operator commands: their profiles.
func (n *Net) operatorEnv() []string {
	return []string{"CUSTODY_CONFIG_DIR=" + filepath.Join(n.Dir, "operators")}
}

// Login writes operator name's profile against node index i's API.
func (n *Net) Login(ctx context.Context, name string, i int) error {
	cr := n.credentials("operators", name)
	_, err := n.childEnv(ctx, n.operatorEnv(), "login", "--profile", name, "--server", "https://"+n.APIs[n.Nodes[i%len(n.Nodes)]],
		"--ca", filepath.Join(n.ClusterDir, "ca", "ca.pem"), "--cert", cr.Cert, "--key", cr.Key, "--device-key", cr.DeviceKey)
	return err
}

// Operator runs `custody ARGS --profile NAME -o json` as operator name and
// decodes its JSON answer into out (nil: ignored). The command line it ran
// is returned for the story's output.
func (n *Net) Operator(ctx context.Context, name string, out any, args ...string) (string, error) {
	line := "custody " + strings.Join(args, " ")
	b, err := n.childEnv(ctx, n.operatorEnv(), append(args, "--profile", name, "-o", "json")...)
	if err != nil {
		return line, fmt.Errorf("%s (as %s): %w", line, name, err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return line, fmt.Errorf("%s: its JSON: %w", line, err)
		}
	}
	return line, nil
}
