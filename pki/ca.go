package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is the cluster certificate authority. Its key stays in memory; a
// production cluster keeps it offline (the cluster-init ceremony writes it
// with mode 0600 and O_EXCL) and only the CA certificate is needed to verify.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a self-signed P-256 CA valid from now-1h for validity.
func NewCA(name string, now time.Time, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: ca cert: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: ca cert: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns the CA certificate in PEM form.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA's private key in PEM form (SEC 1, "EC PRIVATE
// KEY"), for the cluster-init ceremony to write with mode 0600 and O_EXCL.
func (ca *CA) KeyPEM() ([]byte, error) {
	kd, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: ca key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), nil
}

// IssueNode issues a node certificate (RoleNode, server and client
// authentication) whose CommonName is id, returning cert and key as PEM.
func (ca *CA) IssueNode(id NodeID, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return ca.Issue(RoleNode, string(id), now, validity)
}

// Issue issues a certificate of role for the principal id (CommonName),
// returning cert and key as PEM. Nodes get server and client
// authentication; backends and operators client authentication only.
func (ca *CA) Issue(role Role, id string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if !role.valid() {
		return nil, nil, fmt.Errorf("pki: unknown role %q", role)
	}
	if id == "" {
		return nil, nil, fmt.Errorf("pki: %s certificate needs an ID", role)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s key: %w", role, err)
	}
	certPEM, err = ca.issueFor(role, id, &key.PublicKey, now, validity)
	if err != nil {
		return nil, nil, err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s key: %w", role, err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), nil
}

// IssueNodeFor issues a node certificate for a key the caller holds (in an
// HSM, or made elsewhere), returning the certificate as PEM.
func (ca *CA) IssueNodeFor(id NodeID, pub crypto.PublicKey, now time.Time, validity time.Duration) ([]byte, error) {
	if id == "" {
		return nil, fmt.Errorf("pki: %s certificate needs an ID", RoleNode)
	}
	return ca.issueFor(RoleNode, string(id), pub, now, validity)
}

func (ca *CA) issueFor(role Role, id string, pub crypto.PublicKey, now time.Time, validity time.Duration) ([]byte, error) {
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if role == RoleNode {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id, OrganizationalUnit: []string{string(role)}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	if role == RoleNode {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: %s cert: %w", role, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("pki: crypto/rand failed: " + err.Error())
	}
	return n
}
