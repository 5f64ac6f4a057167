package contract

import (
	"testing"

	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestAuthorization: on mutual TLS with a policy, no certificate is refused at the
// handshake, the viewer is refused every mutating RPC (listed by reflection), the
// operator is refused the admin ones, and each call is audited.
func TestAuthorization(t *testing.T) {
	servicetest.CheckAuthorization(t, binary, "netbridge", "--clouds-yaml", devcloud.CloudsYAML())
}
