package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-dev/custody/hsm"
	"github.com/custody-dev/custody/softhsm"
	"github.com/custody-dev/custody/softhsm/softhsmtest"
)

func TestSoftHSMInitCLI(t *testing.T) {
	softhsmtest.SharedEnv(t) // skip/fail rule when softhsm2 is missing
	dir := filepath.Join(t.TempDir(), "hsm")
	t.Setenv(hsmPINEnv, "")
	t.Setenv(hsmSOPINEnv, "")
	// Bad input first: nothing is created.
	for _, bad := range [][]string{
		{"softhsm", "init", "--dir", dir, "--tokens", "a,a"},
		{"softhsm", "init", "--dir", dir, "--tokens", "has space"},
		{"softhsm", "init", "--dir", dir},
		{"softhsm", "init", "--tokens", "a"},
	} {
		if code, _, errOut := runCLI(bad...); code == 0 || errOut == "" {
			t.Fatalf("%v: exit %d", bad, code)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%v created %s", bad, dir)
		}
	}
	code, out, errOut := runCLI("softhsm", "init", "--dir", dir, "--tokens", "node1,node2")
	if code != 0 {
		t.Fatalf("softhsm init: exit %d: %s", code, errOut)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if !strings.Contains(out, "export SOFTHSM2_CONF="+conf+"\n") {
		t.Fatalf("no export line:\n%s", out)
	}
	pinFile := filepath.Join(dir, "user.pin")
	pin, err := hsm.LoadPIN("", pinFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pinFile, filepath.Join(dir, "so.pin")} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
		p, _ := hsm.LoadPIN("", f)
		hsmNoPIN(t, p, out, errOut)
	}
	// The tokens are usable with the printed environment.
	env := &softhsm.Env{ConfPath: conf, Module: mustModule(t)}
	if err := env.Activate(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"node1", "node2"} {
		tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: l, PIN: pin})
		if err != nil {
			t.Fatalf("open %s: %v", l, err)
		}
		tok.Close()
	}
	// A second init into the same directory is refused and changes nothing.
	before, _ := os.ReadDir(filepath.Join(dir, "tokens"))
	if code, _, errOut := runCLI("softhsm", "init", "--dir", dir, "--tokens", "node3"); code == 0 || !strings.Contains(errOut, "already holds") {
		t.Fatalf("second init: exit %d %s", code, errOut)
	}
	if after, _ := os.ReadDir(filepath.Join(dir, "tokens")); len(after) != len(before) {
		t.Fatal("second init changed the token dir")
	}
	// PINs from files are used, not generated; JSON output.
	dir2 := filepath.Join(t.TempDir(), "hsm2")
	pf := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pf, []byte("user-pin-5678\n"), 0o600)
	t.Setenv(hsmSOPINEnv, "so-pin-1234")
	code, out, errOut = runCLI("softhsm", "init", "--dir", dir2, "--tokens", "x", "--pin-file", pf, "-o", "json")
	if code != 0 {
		t.Fatalf("init with PIN files: %s", errOut)
	}
	hsmNoPIN(t, "user-pin-5678", out, errOut)
	hsmNoPIN(t, "so-pin-1234", out, errOut)
	var rep softhsmInitReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Tokens) != 1 || rep.PINFile != pf {
		t.Fatalf("init JSON: %v %+v", err, rep)
	}
	if _, err := os.Stat(filepath.Join(dir2, "user.pin")); !os.IsNotExist(err) {
		t.Fatal("a PIN was generated although one was given")
	}
}

func mustModule(t *testing.T) string {
	t.Helper()
	m, err := softhsm.FindModule()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
