package jobs

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// TestKeyPairUserIsAName: key_pair_user is a login name or empty, for P2V and V2V;
// anything else is refused naming the field (it ends up in a shell script).
func TestKeyPairUserIsAName(t *testing.T) {
	p2vJob := func(u string) *converterv1.CreateJobRequest {
		return &converterv1.CreateJobRequest{Job: &converterv1.Job{
			P2VSource: &converterv1.P2VSource{DiskPath: "/srv/disk.raw", KeyPairUser: u},
			P2VImage:  &converterv1.P2VImage{Cloud: "new"},
		}}
	}
	v2vJob := func(u string) *converterv1.CreateJobRequest {
		return &converterv1.CreateJobRequest{Job: &converterv1.Job{
			Source:      &converterv1.V2VSource{Cloud: "old", ServerId: "6f1c0b7e-2a3d-4c5e-8f9a-0b1c2d3e4f50"},
			Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: "7a1c0b7e-2a3d-4c5e-8f9a-0b1c2d3e4f50", KeyPairUser: u},
		}}
	}
	for _, ok := range []string{"", "ops"} {
		if err := ValidateCreateJob(p2vJob(ok)); err != nil {
			t.Errorf("P2V key_pair_user %q: %v", ok, err)
		}
		if err := ValidateCreateJob(v2vJob(ok)); err != nil {
			t.Errorf("V2V key_pair_user %q: %v", ok, err)
		}
	}
	bad := "ops'; touch /pwned; '"
	if err := ValidateCreateJob(p2vJob(bad)); status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)["job.p2v_source.key_pair_user"] == "" {
		t.Errorf("P2V: %v", err)
	}
	if err := ValidateCreateJob(v2vJob(bad)); status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)["job.destination.key_pair_user"] == "" {
		t.Errorf("V2V: %v", err)
	}
}

// TestP2VBootNamesTheField: a P2V job may boot its image (destination), in the
// cloud it uploads to, with a flavor and one NIC; each mistake names its field.
func TestP2VBootNamesTheField(t *testing.T) {
	port := "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10"
	job := func(img string, d *converterv1.V2VDestination, dry bool) *converterv1.CreateJobRequest {
		return &converterv1.CreateJobRequest{Job: &converterv1.Job{
			P2VSource:   &converterv1.P2VSource{DiskPath: "/srv/disk.raw", InspectOnly: dry},
			P2VImage:    &converterv1.P2VImage{Cloud: img},
			Destination: d,
		}}
	}
	if err := ValidateCreateJob(job("new", &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.small", PortId: port, HealthCheck: "tcp:5432"}, false)); err != nil {
		t.Fatalf("a P2V boot on a port: %v", err)
	}
	for _, c := range []struct {
		name  string
		req   *converterv1.CreateJobRequest
		field string
	}{
		{"another cloud", job("new", &converterv1.V2VDestination{Cloud: "old", Flavor: "m1.small", PortId: port}, false), "job.destination.cloud"},
		{"no flavor", job("new", &converterv1.V2VDestination{Cloud: "new", PortId: port}, false), "job.destination.flavor"},
		{"nics", job("new", &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.small", Nics: []*converterv1.V2VNic{{PortId: port}}}, false), "job.destination.nics"},
		{"no port or network", job("new", &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.small"}, false), "job.destination.network_id"},
		{"no NICs", job("new", &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.small", NoNics: true}, false), "job.destination.no_nics"},
		{"a dry run", job("", &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.small", PortId: port}, true), "job.destination"},
		{"with a V2V source", &converterv1.CreateJobRequest{Job: &converterv1.Job{
			P2VSource: &converterv1.P2VSource{DiskPath: "/srv/disk.raw"}, P2VImage: &converterv1.P2VImage{Cloud: "new"},
			Source: &converterv1.V2VSource{Cloud: "old"}}}, "job.source"},
	} {
		err := ValidateCreateJob(c.req)
		if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)[c.field] == "" {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming %s", c.name, err, c.field)
		}
	}
}

// TestJobSizeIsCapped: a job of more than MaxJobBytes (1 MB jobs were accepted
// before, then streamed whole to every WatchJob) is refused, naming the limit.
func TestJobSizeIsCapped(t *testing.T) {
	nics := make([]string, 0, 5000)
	for range 5000 {
		nics = append(nics, "eno1=52:54:00:12:34:56")
	}
	err := ValidateCreateJob(&converterv1.CreateJobRequest{Job: &converterv1.Job{
		P2VSource: &converterv1.P2VSource{DiskPath: "/srv/disk.raw", Nics: nics}, P2VImage: &converterv1.P2VImage{Cloud: "new"}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(apierr.FieldViolations(err)["job"], "at most 65536") {
		t.Fatalf("a %d-byte job: %v", 5000*24, err)
	}
}

// TestWarmNamesTheField: warm goes with a running server that the job stops, with
// 0 to MaxWarmRounds rounds; each mistake names its field.
func TestWarmNamesTheField(t *testing.T) {
	job := func(s *converterv1.V2VSource) *converterv1.CreateJobRequest {
		s.Cloud, s.ServerId = "old", "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10"
		return &converterv1.CreateJobRequest{Job: &converterv1.Job{Source: s,
			Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f11"}}}
	}
	if err := ValidateCreateJob(job(&converterv1.V2VSource{Warm: true, WarmRounds: 3})); err != nil {
		t.Fatalf("a warm job: %v", err)
	}
	for _, c := range []struct {
		name  string
		src   *converterv1.V2VSource
		field string
	}{
		{"warm and live", &converterv1.V2VSource{Warm: true, Live: true}, "job.source.warm"},
		{"warm and stopped", &converterv1.V2VSource{Warm: true, AlreadyStopped: true}, "job.source.warm"},
		{"rounds without warm", &converterv1.V2VSource{WarmRounds: 2}, "job.source.warm_rounds"},
		{"too many rounds", &converterv1.V2VSource{Warm: true, WarmRounds: MaxWarmRounds + 1}, "job.source.warm_rounds"},
	} {
		err := ValidateCreateJob(job(c.src))
		if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)[c.field] == "" {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming %s", c.name, err, c.field)
		}
	}
}

// TestVolumeTypesNameTheField: destination.volume_types maps type names to type
// names (1 to 255 characters each) and belongs to V2V; each mistake names the entry.
func TestVolumeTypesNameTheField(t *testing.T) {
	v2v := func(m map[string]string) *converterv1.CreateJobRequest {
		return &converterv1.CreateJobRequest{Job: &converterv1.Job{
			Source: &converterv1.V2VSource{Cloud: "old", ServerId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10"},
			Destination: &converterv1.V2VDestination{Cloud: "new", NetworkId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f11",
				VolumeTypes: m},
		}}
	}
	if err := ValidateCreateJob(v2v(map[string]string{"legacy-ssd": "ssd", "standard": "standard"})); err != nil {
		t.Fatalf("a mapping: %v", err)
	}
	for _, c := range []struct {
		name  string
		req   *converterv1.CreateJobRequest
		field string
	}{
		{"empty destination type", v2v(map[string]string{"legacy-ssd": ""}), `job.destination.volume_types["legacy-ssd"]`},
		{"empty source type", v2v(map[string]string{"": "ssd"}), `job.destination.volume_types[""]`},
		{"too long", v2v(map[string]string{"a": strings.Repeat("x", 256)}), `job.destination.volume_types["a"]`},
		{"P2V", &converterv1.CreateJobRequest{Job: &converterv1.Job{
			P2VSource: &converterv1.P2VSource{DiskPath: "/srv/disk.raw"}, P2VImage: &converterv1.P2VImage{Cloud: "new"},
			Destination: &converterv1.V2VDestination{Cloud: "new", Flavor: "m1.small", PortId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f12",
				VolumeTypes: map[string]string{"legacy-ssd": "ssd"}}}}, "job.destination.volume_types"},
	} {
		err := ValidateCreateJob(c.req)
		if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)[c.field] == "" {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming %s", c.name, err, c.field)
		}
	}
}

// TestNoNICsNamesTheField: a V2V destination without NICs has nothing else about
// NICs, and nothing to probe without a host to probe through; an availability zone
// is a name.
func TestNoNICsNamesTheField(t *testing.T) {
	const net = "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f11"
	job := func(d *converterv1.V2VDestination) *converterv1.CreateJobRequest {
		d.Cloud = "new"
		return &converterv1.CreateJobRequest{Job: &converterv1.Job{
			Source:      &converterv1.V2VSource{Cloud: "old", ServerId: "0b3d1a7e-5f43-4c2a-9a55-2d9c4c0e9f10"},
			Destination: d}}
	}
	for _, ok := range []*converterv1.V2VDestination{
		{NoNics: true, AvailabilityZone: "tcg"},
		{NoNics: true, HealthCheck: "tcp:22", HealthCheckHost: "127.0.0.1"},
	} {
		if err := ValidateCreateJob(job(ok)); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, c := range []struct {
		name  string
		d     *converterv1.V2VDestination
		field string
	}{
		{"and a network", &converterv1.V2VDestination{NoNics: true, NetworkId: net}, "job.destination.no_nics"},
		{"and nics", &converterv1.V2VDestination{NoNics: true, Nics: []*converterv1.V2VNic{{NetworkId: net}}}, "job.destination.no_nics"},
		{"and a new address", &converterv1.V2VDestination{NoNics: true, NewAddress: true}, "job.destination.no_nics"},
		{"and a probe of its address", &converterv1.V2VDestination{NoNics: true, HealthCheck: "tcp:22"}, "job.destination.health_check"},
		{"a zone name too long", &converterv1.V2VDestination{NetworkId: net, AvailabilityZone: strings.Repeat("z", 256)}, "job.destination.availability_zone"},
	} {
		err := ValidateCreateJob(job(c.d))
		if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)[c.field] == "" {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming %s", c.name, err, c.field)
		}
	}
}
