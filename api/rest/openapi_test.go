package rest_test

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/custody-dev/custody/api/rest"
)

// TestOpenAPIDocument: api/openapi.yaml loads and validates as OpenAPI 3.1
// with kin-openapi, and its error codes and statuses are exactly the
// package's (the daemon's TestBackendAPI validates every request and
// response against it).
func TestOpenAPIDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	enum := func(s *openapi3.Schema) []string {
		var out []string
		for _, v := range s.Enum {
			out = append(out, v.(string))
		}
		slices.Sort(out)
		return out
	}
	codes := doc.Components.Schemas["Error"].Value.Properties["error"].Value.Properties["code"].Value
	if got, want := enum(codes), slices.Sorted(maps.Keys(rest.Codes())); !slices.Equal(got, want) {
		t.Errorf("error codes in the document %v, in the package %v", got, want)
	}
	if got, want := enum(doc.Components.Schemas["Status"].Value), slices.Sorted(slices.Values(rest.Statuses())); !slices.Equal(got, want) {
		t.Errorf("statuses in the document %v, in the package %v", got, want)
	}
}
