package webhook_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/api/webhook"
)

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

// eventSchema is the request body schema of the withdrawalEvent webhook in
// api/openapi.yaml (loaded and validated once).
func eventSchema(t *testing.T) *openapi3.Schema {
	t.Helper()
	specOnce.Do(func() {
		specDoc, specErr = openapi3.NewLoader().LoadFromFile("../openapi.yaml")
		if specErr == nil {
			specErr = specDoc.Validate(context.Background())
		}
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	hook := specDoc.Webhooks["withdrawalEvent"]
	if hook == nil || hook.Post == nil || hook.Post.RequestBody == nil {
		t.Fatal("api/openapi.yaml has no withdrawalEvent webhook")
	}
	return hook.Post.RequestBody.Value.Content.Get("application/json").Schema.Value
}

// TestEventSchema: the document's webhook names both headers, and its
// event types are exactly "withdrawal." and each API status. (TestDispatcher
// validates every event it receives against the schema.)
func TestEventSchema(t *testing.T) {
	s := eventSchema(t)
	var types []string
	for _, v := range s.Properties["type"].Value.Enum {
		types = append(types, v.(string))
	}
	var want []string
	for _, st := range rest.Statuses() {
		want = append(want, "withdrawal."+st)
	}
	slices.Sort(types)
	slices.Sort(want)
	if !slices.Equal(types, want) {
		t.Errorf("event types %v, want %v", types, want)
	}
	var headers []string
	for _, p := range specDoc.Webhooks["withdrawalEvent"].Post.Parameters {
		if p.Value.In == "header" && p.Value.Required {
			headers = append(headers, p.Value.Name)
		}
	}
	if !slices.Equal(headers, []string{webhook.SignatureHeader, webhook.EventIDHeader}) {
		t.Errorf("required headers %v", headers)
	}
}
