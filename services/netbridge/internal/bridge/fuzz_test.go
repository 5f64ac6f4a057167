package bridge

import (
	"testing"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// FuzzCreateBridge: arbitrary CreateBridge requests through the validation never
// panic, and a refusal is INVALID_ARGUMENT naming a field.
func FuzzCreateBridge(f *testing.F) {
	servicetest.Seed(f, 0, &netbridgev1.CreateBridgeRequest{RequestId: "r1", BridgeId: "old-vlan-101", Bridge: &netbridgev1.Bridge{
		Mode: netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2, Old: &netbridgev1.OldSide{Cloud: "old-admin", NetworkId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10"},
		New: &netbridgev1.NewSide{Cloud: "new-admin", PhysicalNetwork: "physnet2"}, SharedL2: &netbridgev1.SharedL2{OldKeepFree: 16, NewPool: "10.0.0.100-10.0.0.149"}}})
	servicetest.Seed(f, 0, &netbridgev1.CreateBridgeRequest{Bridge: &netbridgev1.Bridge{
		Mode: netbridgev1.BridgeMode_BRIDGE_MODE_ROUTED, Routed: &netbridgev1.Routed{Cidr: "10.201.0.0/24", GatewayIp: "10.101.0.254"}}})
	servicetest.FuzzValidators(f, servicetest.Validate(ValidateCreate))
}
