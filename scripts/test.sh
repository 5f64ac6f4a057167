#!/usr/bin/env bash
# test.sh is Hikkoshi's test command, and exactly what CI runs (.ci/run). On a fresh
# machine it installs what it needs itself (Go tools through the module proxy, Tilt
# built once per machine, the dev cloud's Debian packages), then: buf lint and breaking
# check, the gen/ freshness check, gofmt, go vet, a GOWORK=off build of every service module,
# the dev cloud up (listeners on loopback only; state kept across down and up) and the P2V
# fixture disk (both begun in the background at the start), `tilt ci` on tilt/Tiltfile,
# and go test -race for every module in go.work (last, so its summary closes the output). The integration tests run against the dev cloud;
# under CI=true a dev cloud that is not up fails them instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
step() { printf '\n=== %s (%ds)\n' "$*" "$((SECONDS - start))"; }

# The dev cloud (its apt install and first start) and the P2V fixture disk (its apt
# install and debootstrap) wait on the network and the disk more than on the CPU:
# they start now, one after the other in the background, while the Go tools, the
# checks and Tilt build; their output is shown when they are waited for.
# At the end: stop what is still running in the background, and the dev cloud if this
# run started it. (errexit holds inside a trap too: every step here may fail.)
stop_devcloud=0
curl -s -o /dev/null --max-time 2 http://127.0.0.1:5000/v3 || stop_devcloud=1
bg=""
cleanup() {
  if [[ -n "$bg" ]]; then
    pkill -TERM -P "$bg" 2>/dev/null || true
    kill "$bg" 2>/dev/null || true
    wait "$bg" 2>/dev/null || true
  fi
  if ((stop_devcloud)); then tilt/devcloud/devcloud.sh down || true; fi
}
trap cleanup EXIT
bglog=$(mktemp)
(
  set -e
  echo "--- tilt/devcloud/devcloud.sh up --libvirt --ha ($((SECONDS - start))s)"
  tilt/devcloud/devcloud.sh up --libvirt --ha
  echo "--- tilt/p2v/fixture.sh: the P2V fixture disk, built once per machine, then cached ($((SECONDS - start))s)"
  tilt/p2v/fixture.sh
  echo "--- scripts/browser.sh: Debian's Chromium for the console's browser test ($((SECONDS - start))s)"
  scripts/browser.sh
  echo "--- done ($((SECONDS - start))s)"
) >"$bglog" 2>&1 &
bg=$!

step "tools"
PATH="$(scripts/tools.sh):$PATH"
export PATH

step "buf lint"
buf lint

step "buf breaking (FILE) against the previous commit"
if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto 2>/dev/null; then
  buf breaking --against ".git#ref=HEAD~1"
else
  echo "no earlier proto/ to compare with"
fi

step "buf generate leaves gen/ unchanged"
buf generate
if [[ -n "$(git status --porcelain -- gen/)" ]]; then
  git status --porcelain -- gen/
  git --no-pager diff --stat -- gen/
  echo "gen/ is stale: run 'buf generate' and commit gen/" >&2
  exit 1
fi

mapfile -t modules < <(go list -m -f '{{.Dir}}')
patterns=()
for m in "${modules[@]}"; do patterns+=("./${m#"$root"/}/..."); done

step "the dev cloud data plane's stand-in (python unittest, loopback only)"
/usr/bin/python3 -m unittest discover -s tilt/devcloud/dataplane -p 'test_*.py'

step "gofmt"
unformatted=$(gofmt -l "${modules[@]}")
if [[ -n "$unformatted" ]]; then
  echo "$unformatted"
  echo "not gofmt-formatted: run gofmt -w on them" >&2
  exit 1
fi

step "go vet ${patterns[*]}"
go vet "${patterns[@]}"

step "each service module and cli builds on its own (GOWORK=off)"
for m in services/*/ cli/; do
  (cd "$m" && GOWORK=off go build ./...)
  echo "ok ${m%/}"
done

step "Tilt (scripts/tilt.sh: built once per machine, then cached)"
tilt="$(scripts/tilt.sh)"

step "dev cloud up with the TCG compute and the HA network nodes, and the P2V fixture disk (begun in the background at 0s)"
bgok=0
wait "$bg" || bgok=$?
bg=""
cat "$bglog"
rm -f "$bglog"
if ((bgok != 0)); then
  echo "the dev cloud or the P2V fixture failed (exit $bgok): see above" >&2
  exit 1
fi

step "dev cloud listens on loopback only"
tilt/devcloud/devcloud.sh listeners

step "dev cloud keeps its state across down and up"
HIKKOSHI_DEVCLOUD_RESTART=1 go test -count=1 -run TestStateSurvivesRestart ./tilt/devcloud/devcloud/

step "tilt ci (tilt/Tiltfile)"
(cd tilt && timeout 600 "$tilt" ci --port 0 --timeout 5m)

# The inventory's quiet-sync test proves that a sync with nothing changed writes
# nothing: it runs alone, for the other packages' tests change the shared clouds.
quiet='^TestSyncDiscoversAServer$'
step "go test -race -run $quiet ./services/inventory/test/contract/ (alone)"
go test -race -count=1 -run "$quiet" ./services/inventory/test/contract/

step "go test -race ${patterns[*]}"
go test -race -count=1 -timeout 30m -skip "$quiet" "${patterns[@]}"
echo "=== done in $((SECONDS - start))s"
