#!/usr/bin/env bash
# tools.sh installs the pinned Go tools Hikkoshi's scripts use (buf, the protoc plugins,
# grpcurl) into the per-machine tool cache and prints the directory to put on PATH.
# Everything comes through the Go module proxy; nothing is downloaded from elsewhere.
# A tool already built at the pinned version is reused, so a fresh clone on a machine
# that has run this before pays nothing.
set -euo pipefail

cache="${HIKKOSHI_CACHE:-$HOME/.cache/hikkoshi}"
bin="$cache/bin"
mkdir -p "$bin"

# Pinned versions. Change them here and nowhere else.
tools=(
  "buf github.com/bufbuild/buf/cmd/buf@v1.75.0"
  "protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
  "protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2"
  "grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"
)

for t in "${tools[@]}"; do
  name=${t%% *}
  pkg=${t#* }
  stamp="$bin/.$name.version"
  if [[ -x "$bin/$name" && "$(cat "$stamp" 2>/dev/null)" == "$pkg" ]]; then
    continue
  fi
  echo "tools: installing $pkg" >&2
  GOWORK=off GOFLAGS=-mod=mod GOBIN="$bin" go install "$pkg" >&2
  echo "$pkg" >"$stamp"
done

echo "$bin"
