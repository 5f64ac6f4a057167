#!/usr/bin/env bash
# tilt.sh builds Tilt once per machine into the tool cache and prints its path.
# `go install` of Tilt fails (its go.mod has replace directives) and its web UI must be
# built, so: download the module through the Go module proxy, build the UI with Tilt's
# own pinned yarn (npm registry) and the machine's node, then build the binary inside
# the module where its replace directives apply. About 8 minutes the first time.
set -euo pipefail

version=0.33.21
cache="${HIKKOSHI_CACHE:-$HOME/.cache/hikkoshi}"
bin="$cache/bin"
tilt="$bin/tilt"
if [[ -x "$tilt" && "$("$tilt" version 2>/dev/null | cut -d, -f1)" == "v$version" ]]; then
  echo "$tilt"
  exit 0
fi
command -v node >/dev/null || { echo "tilt.sh: node is required to build Tilt's web UI" >&2; exit 1; }
mkdir -p "$bin"
src="$cache/src/tilt-$version"
if [[ ! -f "$src/.copied" ]]; then
  echo "tilt.sh: downloading github.com/tilt-dev/tilt@v$version" >&2
  dir=$(GOWORK=off GOFLAGS=-mod=mod go mod download -json "github.com/tilt-dev/tilt@v$version" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$dir" ]] || { echo "tilt.sh: module download failed" >&2; exit 1; }
  rm -rf "$src" && mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  touch "$src/.copied"
fi
if [[ ! -f "$src/pkg/assets/build/index.html" ]]; then
  echo "tilt.sh: building Tilt's web UI (npm registry, a few minutes)" >&2
  (cd "$src/web" && node .yarn/releases/yarn-4.1.0.cjs install >&2 && node .yarn/releases/yarn-4.1.0.cjs build >&2)
  rm -rf "$src/pkg/assets/build"
  cp -r "$src/web/build" "$src/pkg/assets/build"
fi
echo "tilt.sh: building tilt" >&2
(cd "$src" && GOWORK=off GOFLAGS=-mod=mod go build \
  -ldflags "-X main.version=$version -X main.date=$(date -u +%Y-%m-%d)" -o "$tilt.tmp" ./cmd/tilt)
mv "$tilt.tmp" "$tilt"
echo "$tilt"
