//go:build !unix

package watermark

import (
	"errors"
	"os"
)

// lockDir: signer nodes run on Unix; elsewhere the store refuses to open
// rather than run without single-writer protection.
func lockDir(string) (*os.File, error) {
	return nil, errors.New("watermark: directory locking is only implemented on unix")
}
