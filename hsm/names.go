package hsm

import (
	"fmt"
	"sort"

	"github.com/miekg/pkcs11"
)

// Names for the PKCS#11 constants that reports show; anything else is
// printed in hex.
var (
	classNames = map[uint]string{
		pkcs11.CKO_DATA: "DATA", pkcs11.CKO_CERTIFICATE: "CERTIFICATE", pkcs11.CKO_PUBLIC_KEY: "PUBLIC_KEY",
		pkcs11.CKO_PRIVATE_KEY: "PRIVATE_KEY", pkcs11.CKO_SECRET_KEY: "SECRET_KEY",
	}
	keyTypeNames = map[uint]string{
		pkcs11.CKK_RSA: "RSA", pkcs11.CKK_EC: "EC", pkcs11.CKK_AES: "AES", pkcs11.CKK_GENERIC_SECRET: "GENERIC_SECRET",
		pkcs11.CKK_DES3: "DES3",
	}
	mechNames = map[uint]string{
		pkcs11.CKM_AES_KEY_GEN: "CKM_AES_KEY_GEN", pkcs11.CKM_AES_GCM: "CKM_AES_GCM", pkcs11.CKM_AES_CBC: "CKM_AES_CBC",
		pkcs11.CKM_AES_CBC_PAD: "CKM_AES_CBC_PAD", pkcs11.CKM_AES_ECB: "CKM_AES_ECB", pkcs11.CKM_AES_CTR: "CKM_AES_CTR",
		pkcs11.CKM_AES_KEY_WRAP: "CKM_AES_KEY_WRAP", pkcs11.CKM_AES_KEY_WRAP_PAD: "CKM_AES_KEY_WRAP_PAD",
		pkcs11.CKM_AES_CMAC: "CKM_AES_CMAC", pkcs11.CKM_EC_KEY_PAIR_GEN: "CKM_EC_KEY_PAIR_GEN", pkcs11.CKM_ECDSA: "CKM_ECDSA",
		pkcs11.CKM_ECDSA_SHA1: "CKM_ECDSA_SHA1", pkcs11.CKM_ECDSA_SHA256: "CKM_ECDSA_SHA256", pkcs11.CKM_ECDSA_SHA384: "CKM_ECDSA_SHA384",
		pkcs11.CKM_ECDSA_SHA512: "CKM_ECDSA_SHA512", pkcs11.CKM_ECDH1_DERIVE: "CKM_ECDH1_DERIVE",
		pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN", pkcs11.CKM_RSA_PKCS: "CKM_RSA_PKCS",
		pkcs11.CKM_RSA_PKCS_PSS: "CKM_RSA_PKCS_PSS", pkcs11.CKM_RSA_PKCS_OAEP: "CKM_RSA_PKCS_OAEP",
		pkcs11.CKM_SHA256: "CKM_SHA256", pkcs11.CKM_SHA512: "CKM_SHA512", pkcs11.CKM_SHA256_HMAC: "CKM_SHA256_HMAC",
		pkcs11.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN",
		0x1055:                            "CKM_EC_EDWARDS_KEY_PAIR_GEN", 0x1057: "CKM_EDDSA", // not named in miekg/pkcs11 v1.1.2
		pkcs11.CKM_RSA_X_509:             "CKM_RSA_X_509",
		pkcs11.CKM_MD5_RSA_PKCS:          "CKM_MD5_RSA_PKCS",
		pkcs11.CKM_SHA1_RSA_PKCS:         "CKM_SHA1_RSA_PKCS",
		pkcs11.CKM_SHA1_RSA_PKCS_PSS:     "CKM_SHA1_RSA_PKCS_PSS",
		pkcs11.CKM_DSA_KEY_PAIR_GEN:      "CKM_DSA_KEY_PAIR_GEN",
		pkcs11.CKM_DSA:                   "CKM_DSA",
		pkcs11.CKM_DSA_SHA1:              "CKM_DSA_SHA1",
		pkcs11.CKM_DSA_SHA224:            "CKM_DSA_SHA224",
		pkcs11.CKM_DSA_SHA256:            "CKM_DSA_SHA256",
		pkcs11.CKM_DSA_SHA384:            "CKM_DSA_SHA384",
		pkcs11.CKM_DSA_SHA512:            "CKM_DSA_SHA512",
		pkcs11.CKM_DH_PKCS_KEY_PAIR_GEN:  "CKM_DH_PKCS_KEY_PAIR_GEN",
		pkcs11.CKM_DH_PKCS_DERIVE:        "CKM_DH_PKCS_DERIVE",
		pkcs11.CKM_SHA256_RSA_PKCS:       "CKM_SHA256_RSA_PKCS",
		pkcs11.CKM_SHA384_RSA_PKCS:       "CKM_SHA384_RSA_PKCS",
		pkcs11.CKM_SHA512_RSA_PKCS:       "CKM_SHA512_RSA_PKCS",
		pkcs11.CKM_SHA256_RSA_PKCS_PSS:   "CKM_SHA256_RSA_PKCS_PSS",
		pkcs11.CKM_SHA384_RSA_PKCS_PSS:   "CKM_SHA384_RSA_PKCS_PSS",
		pkcs11.CKM_SHA512_RSA_PKCS_PSS:   "CKM_SHA512_RSA_PKCS_PSS",
		pkcs11.CKM_SHA224_RSA_PKCS:       "CKM_SHA224_RSA_PKCS",
		pkcs11.CKM_SHA224_RSA_PKCS_PSS:   "CKM_SHA224_RSA_PKCS_PSS",
		pkcs11.CKM_DES_KEY_GEN:           "CKM_DES_KEY_GEN",
		pkcs11.CKM_DES_ECB:               "CKM_DES_ECB",
		pkcs11.CKM_DES_CBC:               "CKM_DES_CBC",
		pkcs11.CKM_DES_CBC_PAD:           "CKM_DES_CBC_PAD",
		pkcs11.CKM_DES2_KEY_GEN:          "CKM_DES2_KEY_GEN",
		pkcs11.CKM_DES3_KEY_GEN:          "CKM_DES3_KEY_GEN",
		pkcs11.CKM_DES3_ECB:              "CKM_DES3_ECB",
		pkcs11.CKM_DES3_CBC:              "CKM_DES3_CBC",
		pkcs11.CKM_DES3_CBC_PAD:          "CKM_DES3_CBC_PAD",
		pkcs11.CKM_DES3_CMAC:             "CKM_DES3_CMAC",
		pkcs11.CKM_MD5:                   "CKM_MD5",
		pkcs11.CKM_MD5_HMAC:              "CKM_MD5_HMAC",
		pkcs11.CKM_SHA_1:                 "CKM_SHA_1",
		pkcs11.CKM_SHA_1_HMAC:            "CKM_SHA_1_HMAC",
		pkcs11.CKM_SHA224:                "CKM_SHA224",
		pkcs11.CKM_SHA224_HMAC:           "CKM_SHA224_HMAC",
		pkcs11.CKM_SHA384:                "CKM_SHA384",
		pkcs11.CKM_SHA384_HMAC:           "CKM_SHA384_HMAC",
		pkcs11.CKM_SHA512_HMAC:           "CKM_SHA512_HMAC",
		pkcs11.CKM_DES_ECB_ENCRYPT_DATA:  "CKM_DES_ECB_ENCRYPT_DATA",
		pkcs11.CKM_DES_CBC_ENCRYPT_DATA:  "CKM_DES_CBC_ENCRYPT_DATA",
		pkcs11.CKM_DES3_ECB_ENCRYPT_DATA: "CKM_DES3_ECB_ENCRYPT_DATA",
		pkcs11.CKM_DES3_CBC_ENCRYPT_DATA: "CKM_DES3_CBC_ENCRYPT_DATA",
		pkcs11.CKM_AES_ECB_ENCRYPT_DATA:  "CKM_AES_ECB_ENCRYPT_DATA",
		pkcs11.CKM_AES_CBC_ENCRYPT_DATA:  "CKM_AES_CBC_ENCRYPT_DATA",
		pkcs11.CKM_DSA_PARAMETER_GEN:     "CKM_DSA_PARAMETER_GEN",
		pkcs11.CKM_DH_PKCS_PARAMETER_GEN: "CKM_DH_PKCS_PARAMETER_GEN",
	}
)

func className(v uint) string   { return nameOr(classNames, v) }
func keyTypeName(v uint) string { return nameOr(keyTypeNames, v) }

func nameOr(m map[uint]string, v uint) string {
	if s, ok := m[v]; ok {
		return s
	}
	return fmt.Sprintf("0x%x", v)
}

// mechanismNames returns sorted names, known ones first by name.
func mechanismNames(ms []*pkcs11.Mechanism) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, nameOr(mechNames, m.Mechanism))
	}
	sort.Strings(out)
	return out
}
