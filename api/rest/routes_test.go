package rest_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/custody-dev/custody/api/rest"
	"github.com/custody-dev/custody/pki"
)

// roleColumns are the role columns of docs/api.md's endpoint × role
// table, in order; the columns after them are the same for every
// endpoint.
var roleColumns = []pki.Role{pki.RoleBackend, pki.RoleOperator}

// fixedColumns: node certificate, another CA / none / expired, a
// principal the registry does not hold active.
var fixedColumns = []string{"TLS refused", "TLS refused", "401"}

// docTable reads the endpoint × role table of docs/api.md: each row's
// "METHOD /path" and its cells.
func docTable(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "<!-- endpoint-role-table -->")
	if !ok {
		t.Fatal("docs/api.md has no <!-- endpoint-role-table --> marker")
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(after, "\n")[1:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		ep := strings.Trim(cells[0], "`")
		if !strings.HasPrefix(cells[0], "`") {
			continue // the header and its rule
		}
		if _, dup := rows[ep]; dup {
			t.Errorf("docs/api.md lists %s twice", ep)
		}
		rows[ep] = cells[1:]
	}
	return rows
}

// TestRouteTable: the endpoint × role table is one table. The routes the
// handler serves (rest.Routes), the rows of docs/api.md's table (who may
// use each, the refusals of everyone else) and the operations of
// api/openapi.yaml are the same set, with the same roles: an endpoint
// added without its row, or a row without its endpoint, fails here.
func TestRouteTable(t *testing.T) {
	rows := docTable(t)
	seen := map[string]bool{}
	for _, rt := range rest.Routes() {
		ep := rt.Pattern()
		if seen[ep] {
			t.Errorf("rest.Routes lists %s twice", ep)
		}
		seen[ep] = true
		if len(rt.Roles) == 0 {
			t.Errorf("%s: no role may use it", ep)
		}
		cells, ok := rows[ep]
		if !ok {
			t.Errorf("%s is served but has no row in docs/api.md's endpoint × role table", ep)
			continue
		}
		var want []string
		for _, role := range roleColumns {
			if rt.Allows(role) {
				want = append(want, "yes")
			} else {
				want = append(want, "403")
			}
		}
		want = append(want, fixedColumns...)
		if !slices.Equal(cells, want) {
			t.Errorf("docs/api.md's row of %s says %q; the handler: %q", ep, cells, want)
		}
	}
	for ep := range rows {
		if !seen[ep] {
			t.Errorf("docs/api.md's table lists %s, which the handler does not serve", ep)
		}
	}
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops[method+" "+path] = true
		}
	}
	for ep := range seen {
		if !ops[ep] {
			t.Errorf("%s is served but api/openapi.yaml does not describe it", ep)
		}
	}
	for ep := range ops {
		if !seen[ep] {
			t.Errorf("api/openapi.yaml describes %s, which the handler does not serve", ep)
		}
	}
}
