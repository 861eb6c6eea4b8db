package rest

import (
	"net/http"
	"slices"
	"strings"

	"github.com/custody-dev/custody/pki"
)

// Route is one endpoint of the API and the certificate roles that may use
// it: a row of the endpoint × role table in docs/api.md. Every other role
// is answered 403 forbidden; certificates of no admitted role never get
// past the TLS handshake ([ServerTLS]).
type Route struct {
	// Method is the HTTP method (GET, POST).
	Method string
	// Path is the path as a ServeMux pattern: /v1/withdrawals/{id}.
	Path string
	// Roles may use the endpoint.
	Roles []pki.Role
}

// Pattern is the route's ServeMux pattern ("GET /v1/wallets/{id}").
func (rt Route) Pattern() string { return rt.Method + " " + rt.Path }

// Allows reports whether role may use the route.
func (rt Route) Allows(role pki.Role) bool { return slices.Contains(rt.Roles, role) }

// route is a Route and its handler.
type route struct {
	Route
	handle func(s *server, w http.ResponseWriter, r *http.Request, peer pki.Peer, body []byte) (int, any, error)
}

var (
	backendOnly         = []pki.Role{pki.RoleBackend}
	operatorOnly        = []pki.Role{pki.RoleOperator}
	backendAndOperators = []pki.Role{pki.RoleBackend, pki.RoleOperator}
)

// routes is the endpoint × role table: NewHandler serves exactly these,
// and TestRouteTable holds them equal to docs/api.md's table and to
// api/openapi.yaml's operations, so an endpoint cannot be added without
// its row.
var routes = []route{
	{Route{http.MethodPost, PathWithdrawals, backendOnly}, (*server).create},
	{Route{http.MethodGet, PathWithdrawals, backendOnly}, (*server).list},
	{Route{http.MethodGet, PathWithdrawals + "/{id}", backendOnly}, (*server).get},
	{Route{http.MethodGet, PathWallets, backendAndOperators}, (*server).wallets},
	{Route{http.MethodGet, PathWallets + "/{id}", backendAndOperators}, (*server).wallet},
	{Route{http.MethodGet, PathWhoami, backendAndOperators}, (*server).whoami},
	{Route{http.MethodGet, PathRequests, operatorOnly}, (*server).requests},
	{Route{http.MethodGet, PathRequests + "/{id}", operatorOnly}, (*server).request},
	{Route{http.MethodPost, PathRequests + "/{id}/approvals", operatorOnly}, (*server).answer},
	{Route{http.MethodPost, PathRequests + "/{id}/export", operatorOnly}, (*server).coldExport},
	{Route{http.MethodPost, PathRequests + "/{id}/import", operatorOnly}, (*server).coldImport},
	{Route{http.MethodGet, PathChanges, operatorOnly}, (*server).changes},
	{Route{http.MethodPost, PathChanges, operatorOnly}, (*server).propose},
	{Route{http.MethodGet, PathChanges + "/{id}", operatorOnly}, (*server).change},
	{Route{http.MethodPost, PathChanges + "/{id}/approvals", operatorOnly}, (*server).approveChange},
	{Route{http.MethodGet, PathAllowlist, operatorOnly}, (*server).allowlist},
	{Route{http.MethodGet, PathLocks, operatorOnly}, (*server).locks},
	{Route{http.MethodGet, PathAudit, operatorOnly}, (*server).audit},
	{Route{http.MethodGet, PathAudit + "/heads", operatorOnly}, (*server).heads},
}

// Routes returns every endpoint the handler serves with the roles that
// may use it, in the table's order.
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		out[i] = r.Route
		out[i].Roles = slices.Clone(r.Roles)
	}
	return out
}

// matchPath reports whether path matches the ServeMux path pattern (a
// {name} segment matches any one non-empty segment).
func matchPath(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i, p := range ps {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			if xs[i] == "" {
				return false
			}
		} else if p != xs[i] {
			return false
		}
	}
	return true
}

// allowed is the methods the table serves at path, sorted ("" when the
// path is no endpoint's): the Allow header of a 405.
func allowed(path string) string {
	var ms []string
	for _, r := range routes {
		if matchPath(r.Path, path) && !slices.Contains(ms, r.Method) {
			ms = append(ms, r.Method)
		}
	}
	slices.Sort(ms)
	return strings.Join(ms, ", ")
}
