#!/usr/bin/env bash
# chaos.sh runs the wave runner's chaos contract test for many rounds (default 20):
# each round moves a wave of two web servers behind a load balancer while one fault
# strikes at a random step — a kill -9 of the leading runner, of a converter worker
# or of lbaas, or a restart of Octavia's, Nova's, Glance's or Neutron's API — and
# checks that the wave ends done with no failed request and nothing done twice or
# left behind. The dev cloud must be up (tilt/devcloud/devcloud.sh up --libvirt).
# Run it alone: an API restart would also hit other tests using the dev cloud.
#   scripts/chaos.sh [ROUNDS] [SEED]     (CI runs 2 rounds of process kills in scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
seed=${2:-$(date +%s)}
echo "chaos: $rounds rounds, seed $seed (scripts/chaos.sh $rounds $seed repeats them)"
HIKKOSHI_CHAOS_ROUNDS=$rounds HIKKOSHI_CHAOS_SEED=$seed HIKKOSHI_CHAOS_API_RESTARTS=1 \
  go test -count=1 -timeout "$((rounds * 6 + 10))m" -run '^TestWaveRunSurvivesChaos$' -v ./services/inventory/test/contract/ |
  tee ".cache/chaos-$seed.log" | grep -E '^\s+---|chaos_test.go:[0-9]+: (chaos|fault|meter)|^(ok|FAIL|PASS)|^\s{10}(killed|restarted)' 
