#!/usr/bin/env bash
# test.sh is Hikkoshi's test command, and exactly what CI runs (.ci/run). On a fresh
# machine it installs what it needs itself (Go tools through the module proxy, Tilt
# built once per machine), then: buf lint and breaking check, the gen/ freshness check,
# go vet, a GOWORK=off build of every service module, `tilt ci` on tilt/Tiltfile, and
# go test -race for every module in go.work (last, so its summary closes the output).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
step() { printf '\n=== %s (%ds)\n' "$*" "$((SECONDS - start))"; }

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

step "go vet ${patterns[*]}"
go vet "${patterns[@]}"

step "each service module builds on its own (GOWORK=off)"
for m in services/*/; do
  (cd "$m" && GOWORK=off go build ./...)
  echo "ok ${m%/}"
done

step "tilt ci (tilt/Tiltfile)"
tilt="$(scripts/tilt.sh)"
(cd tilt && timeout 600 "$tilt" ci --port 0 --timeout 5m)

step "go test -race ${patterns[*]}"
go test -race -count=1 -timeout 20m "${patterns[@]}"
echo "=== done in $((SECONDS - start))s"
