package daemon

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custody-dev/custody/api/webhook"
)

const hookYAML = validYAML + `webhooks:
  endpoints:
    - {principal: exchange, url: "https://hooks.exchange.example/custody", secret_file: hook.secret, ca_file: hook-ca.pem}
`

// TestWebhookConfigDefaultsAndPaths: delivery limits take their defaults,
// the secret and CA files resolve against the config's directory.
func TestWebhookConfigDefaultsAndPaths(t *testing.T) {
	c, err := ParseConfig([]byte(hookYAML), "/base")
	if err != nil {
		t.Fatal(err)
	}
	w := c.Webhooks
	if time.Duration(w.Timeout) != webhook.DefaultTimeout || w.MaxAttempts != webhook.DefaultMaxAttempts || time.Duration(w.MaxAge) != webhook.DefaultMaxAge ||
		time.Duration(w.BackoffMin) != webhook.DefaultBackoffMin || time.Duration(w.BackoffMax) != webhook.DefaultBackoffMax || w.Concurrency != webhook.DefaultConcurrency {
		t.Errorf("defaults: %+v", w)
	}
	if e := w.Endpoints[0]; e.SecretFile != filepath.Join("/base", "hook.secret") || e.CAFile != filepath.Join("/base", "hook-ca.pem") {
		t.Errorf("relative names not resolved: %+v", e)
	}
	loop := strings.Replace(hookYAML, `url: "https://hooks.exchange.example/custody", secret_file: hook.secret, ca_file: hook-ca.pem`,
		`url: "http://127.0.0.1:9999/hook", secret_file: hook.secret, allow_http: true`, 1)
	if _, err := ParseConfig([]byte(loop), "/base"); err != nil {
		t.Errorf("http to loopback with allow_http: %v", err)
	}
}

// TestWebhookConfigRefusals: each refusal names the YAML path; a secret
// never has a place in the config.
func TestWebhookConfigRefusals(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(hookYAML, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return strings.Replace(hookYAML, old, new, 1)
	}
	const url = `url: "https://hooks.exchange.example/custody"`
	for name, tc := range map[string]struct{ yaml, path string }{
		"http without the opt-out": {edit(url, `url: "http://127.0.0.1:9999/hook"`), "webhooks.endpoints[0].url: http://127.0.0.1:9999 is plain http"},
		"http to a remote host":    {edit(url+", secret_file: hook.secret, ca_file: hook-ca.pem", `url: "http://hooks.example/h", secret_file: hook.secret, allow_http: true`), "webhooks.endpoints[0].allow_http: plain http is allowed to a loopback host only"},
		"opt-out with https":       {edit("ca_file: hook-ca.pem", "allow_http: true"), "webhooks.endpoints[0].allow_http: set only with an http:// URL"},
		"not a URL":                {edit(url, `url: "hooks.example"`), "webhooks.endpoints[0].url: want an https:// URL"},
		"user info in the URL":     {edit(url, `url: "https://u:pw@hooks.example/h"`), "webhooks.endpoints[0].url: the URL holds user information"},
		"a secret inline":          {edit("secret_file: hook.secret", "secret: hunter2hunter2"), "webhooks.endpoints[0].secret (line 14): unknown field"},
		"no secret file":           {edit("secret_file: hook.secret, ", ""), "webhooks.endpoints[0].secret_file: required"},
		"no principal":             {edit("principal: exchange, ", ""), "webhooks.endpoints[0].principal: required"},
		"repeated principal":       {hookYAML + "    - {principal: exchange, url: \"https://b.example/\", secret_file: b.secret}\n", "webhooks.endpoints[1].principal"},
		"backoff max below min":    {hookYAML + "  backoff_min: 1m\n  backoff_max: 1s\n", "webhooks.backoff_max"},
		"zero attempts":            {hookYAML + "  max_attempts: -1\n", "webhooks.max_attempts"},
		"timeout too long":         {hookYAML + "  timeout: 1h\n", "webhooks.timeout"},
		"concurrency":              {hookYAML + "  concurrency: 1000\n", "webhooks.concurrency"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "/base")
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("got %v, want an *Error mentioning %q", err, tc.path)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), ":pw@") {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
}
