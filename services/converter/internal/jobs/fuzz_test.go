package jobs

import (
	"testing"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// FuzzCreateJob: arbitrary CreateJob requests through the validation and this
// worker's policy (clouds, disk roots, agent networks) never panic, and a refusal
// is INVALID_ARGUMENT naming a field.
func FuzzCreateJob(f *testing.F) {
	nets, err := ParseNetworks([]string{"127.0.0.1/32"})
	if err != nil {
		f.Fatal(err)
	}
	policy := Policy{Clouds: []string{"old", "new"}, DiskRoots: []string{f.TempDir()}, AgentNetworks: nets, WorkDir: "/var/lib/hikkoshi/p2v"}
	servicetest.Seed(f, 0, &converterv1.CreateJobRequest{RequestId: "r1", Job: &converterv1.Job{
		Source:      &converterv1.V2VSource{Cloud: "old", ServerId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10"},
		Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f11", HealthCheck: "tcp:22"}}})
	servicetest.Seed(f, 0, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: "/etc/../etc/shadow", Nics: []string{"eno1=52:54:00:12:34:56"}, KeyPairUser: "ops"},
		P2VImage:  &converterv1.P2VImage{Cloud: "new"}, Destination: &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.small"}}})
	servicetest.Seed(f, 1, &converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{AgentUrl: "http://127.0.0.1:7420", MoreAgentDisks: []int32{1, 1}}, P2VImage: &converterv1.P2VImage{Cloud: "new"}}})
	servicetest.FuzzValidators(f,
		servicetest.Validate(ValidateCreateJob),
		servicetest.Validate(func(r *converterv1.CreateJobRequest) error {
			if err := ValidateCreateJob(r); err != nil {
				return err
			}
			return policy.Err(r.GetJob())
		}),
	)
}
