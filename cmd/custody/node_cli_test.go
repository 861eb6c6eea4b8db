package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeQuarantine: the failure budget of a stopped node is listed and a
// party's quarantine cleared; an unknown party and a damaged file are
// refused with one line and leave the file as it was.
func TestNodeQuarantine(t *testing.T) {
	rep := clusterInit(t, filepath.Join(t.TempDir(), "cluster"))
	config := rep.Nodes[0].Config
	code, out, errOut := runCLI("node", "quarantine", "--config", config)
	if code != 0 || !strings.Contains(out, "no failures recorded (limit 3)") {
		t.Fatalf("empty budget: exit %d %q %q", code, out, errOut)
	}
	data := filepath.Join(filepath.Dir(config), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	budget := filepath.Join(data, "tss-budget.json")
	if err := os.WriteFile(budget, []byte(`{"limit":3,"failures":{"n2":1,"n3":3}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI("node", "quarantine", "--config", config)
	if code != 0 || !strings.Contains(out, "n2           1 of 3 failures\n") || !strings.Contains(out, "n3           3 of 3 failures  QUARANTINED") {
		t.Fatalf("list: exit %d %q", code, out)
	}
	code, _, errOut = runCLI("node", "quarantine", "--config", config, "--clear", "n4")
	oneLineErr(t, code, errOut, `no failures recorded for "n4"`)
	if code, out, _ = runCLI("node", "quarantine", "--config", config, "--clear", "n3"); code != 0 || !strings.Contains(out, "cleared the failures of n3") {
		t.Fatalf("clear: exit %d %q", code, out)
	}
	code, out, _ = runCLI("node", "quarantine", "--config", config, "-o", "json")
	if code != 0 || strings.Contains(out, "n3") || !strings.Contains(out, `"node": "n2"`) {
		t.Fatalf("after clearing n3: %q", out)
	}
	if err := os.WriteFile(budget, []byte(`{"limit":3`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("node", "quarantine", "--config", config, "--clear", "n2")
	oneLineErr(t, code, errOut, "damaged")
	if b, _ := os.ReadFile(budget); string(b) != `{"limit":3` {
		t.Fatalf("a refused clear rewrote the file: %q", b)
	}
}

// TestNodeRunRefusesBadConfig: node run without a config, or with one that
// does not load, exits 1 with one line.
func TestNodeRunRefusesBadConfig(t *testing.T) {
	code, _, errOut := runCLI("node", "run")
	oneLineErr(t, code, errOut, "--config is required")
	code, _, errOut = runCLI("node", "run", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	oneLineErr(t, code, errOut, "no such file")
	code, _, errOut = runCLI("node", "run", "--config", writeTemp(t, "c.yaml", "node_id: n1\nbogus: 1\n"), "--log-level", "info")
	oneLineErr(t, code, errOut, "bogus")
	code, _, errOut = runCLI("node", "run", "--config", writeTemp(t, "c.yaml", "node_id: n1\n"), "--log-level", "loud")
	oneLineErr(t, code, errOut, "--log-level")
}
