// Package deploy holds no code: it is the home of the deployment files
// (systemd units, the three-node example, the container file, the runbook)
// and of the tests that keep them true to the node: every unit carries its
// hardening directives and verifies with systemd-analyze where it exists,
// every example config is a valid node config, the example script produces
// exactly the committed configs, and the container image builds and runs
// where a container runtime works. See deploy/RUNBOOK.md.
package deploy
