package rest

import (
	"net/http"

	"github.com/custody-dev/custody/ledger"
	"github.com/custody-dev/custody/pki"
	"github.com/custody-dev/custody/quorum"
)

// principalKind is the registry kind a certificate role must name: a
// backend certificate a backend principal, an operator certificate a
// human operator.
var principalKind = map[pki.Role]quorum.OperatorKind{
	pki.RoleBackend:  quorum.KindBackend,
	pki.RoleOperator: quorum.KindHuman,
}

// activePrincipal checks that the certificate's principal is an active
// entry of the registry of st, of its role's kind. The certificate says
// who the peer is; the registry (operator-signed changes) says whether
// that principal may still act: a suspended one is refused at its next
// request, whatever its certificate's validity.
func activePrincipal(st *ledger.State, p pki.Peer) error {
	op, ok := st.Registry.Operators[p.ID]
	kind, known := principalKind[p.Role]
	switch {
	case !ok:
		return apiErr(http.StatusUnauthorized, CodePrincipalInactive, "", "api: %s is not enrolled in the cluster's registry", p)
	case !known || op.Kind != kind:
		return apiErr(http.StatusUnauthorized, CodePrincipalInactive, "", "api: %s names a %s registry entry, not a %s one", p, op.Kind, kind)
	case op.Status != quorum.StatusActive:
		return apiErr(http.StatusUnauthorized, CodePrincipalInactive, "", "api: %s is %s in the cluster's registry", p, op.Status)
	}
	return nil
}
