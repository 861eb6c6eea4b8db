package devnet

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"
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

// carolToken is the label of carol's device token (provisionTokens).
const carolToken = "custody-carol-device"

// EnrollTokenDevice gives carol a device inside her own PKCS#11 token: a
// P-256 key generated in the token (custody operator keygen --pkcs11),
// enrolled by the admin quorum (alice proposes custody device add, bob
// approves), and carol's profile switched to it, so every answer of hers
// after this is signed inside the token. It returns the device ID.
func (n *Net) EnrollTokenDevice(ctx context.Context, i int) (string, error) {
	serial := n.serials[carolToken]
	var dev struct {
		DeviceID  string `json:"device_id"`
		PublicKey string `json:"public_key"`
	}
	b, err := n.child(ctx, "operator", "keygen", "--pkcs11", "--token-serial", serial, "--pin-file", n.pinFile, "-o", "json")
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, &dev); err != nil {
		return "", fmt.Errorf("operator keygen's report: %w", err)
	}
	if _, err := n.Operator(ctx, "alice", nil, "device", "add", "--operator", "carol", "--public-key", dev.PublicKey,
		"--device-kind", "ecdsa-p256", "--label", "carol's token", "--id", "device-carol-token", "--yes"); err != nil {
		return "", err
	}
	if _, err := n.Operator(ctx, "bob", nil, "changes", "approve", "device-carol-token", "--yes"); err != nil {
		return "", err
	}
	cr := n.credentials("operators", "carol")
	// The node that answers may apply the enrollment a moment after the
	// leader committed it: login checks the device there.
	var lerr error
	for range 40 {
		_, lerr = n.childEnv(ctx, n.operatorEnv(), "login", "--profile", "carol", "--server", "https://"+n.APIs[n.Nodes[i%len(n.Nodes)]],
			"--ca", filepath.Join(n.ClusterDir, "ca", "ca.pem"), "--cert", cr.Cert, "--key", cr.Key,
			"--pkcs11", "--token-serial", serial, "--pin-file", n.pinFile)
		if lerr == nil {
			return dev.DeviceID, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return "", lerr
}
