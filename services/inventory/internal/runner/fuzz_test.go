package runner

import (
	"testing"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// FuzzCreateRun: arbitrary CreateRun requests through the validation never panic,
// and a refusal is INVALID_ARGUMENT naming a field.
func FuzzCreateRun(f *testing.F) {
	servicetest.Seed(f, 0, &inventoryv1.CreateRunRequest{RequestId: "r1", Run: &inventoryv1.Run{Wave: 1, Destination: "new",
		Roles:    map[string]*inventoryv1.RoleSettings{"web": {MaxSurge: 1, MinHealthy: 1, DrainSeconds: 3}},
		Networks: map[string]string{oldNet: newNet}, HealthCheck: "http:8080/healthz"}})
	servicetest.FuzzValidators(f, servicetest.Validate(ValidateCreateRun))
}
