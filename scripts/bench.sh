#!/usr/bin/env bash
# bench.sh [grpc] runs the inventory registry benchmark (gRPC Get/List against the service
# binary, bare etcd reads against the same etcd as the baseline, in one run) and prints
# each gRPC call's median time as a ratio of its baseline.
#   scripts/bench.sh [count]   (default 5 runs of each)
#   scripts/bench.sh sync [n]  an inventory sync of 10,000 servers / 30,000 ports (pages
#                              from a local HTTP server) against the bare listing
#   scripts/bench.sh copy      an image copy of 256 MiB, 1 GiB and 4 GiB between the dev
#                              cloud's Glance services, over loopback and (1 GiB) a
#                              100 MB/s link: pipe, two-step and imagecopy's three
#                              modes, each as a ratio of the pipe's speed (needs the
#                              dev cloud; HIKKOSHI_BENCH_COPY_SIZES=256,1024 for fewer)
#   scripts/bench.sh warm      a stateful server's cut-over copy over a 100 Mbit/s link,
#                              cold against warm (pre-copy, then only what changed),
#                              same run, and the share of a snapshot found again by
#                              each way of cutting (fixed, content-defined)
#   scripts/bench.sh grpc [n]  the registry benchmark below (the default)
#   scripts/bench.sh p2v [n]   the P2V fixture converted n times (default 3) against
#                              qemu-img convert of the same disk (and virt-v2v, see
#                              BenchmarkP2V)
#   scripts/bench.sh lbaas     20 load balancers created at once through the lbaas
#                              service, against Octavia's own time (needs the dev cloud:
#                              tilt/devcloud/devcloud.sh up)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == sync ]]; then
  # A cloud of 10,000 servers and 30,000 ports, as pages from a local HTTP server.
  go test -run '^$' -bench 'BenchmarkSync10k' -benchtime "${2:-3}x" ./services/inventory/internal/discovery/ |
    tee /dev/stderr | awk '
    /^BenchmarkSync10k\// { split($1, p, "/"); name = p[2]; sub(/-[0-9]+$/, "", name); t[name] = $3; order[++n] = name }
    END {
      printf "\n%-18s %10s %8s\n", "run", "seconds", "× bare"
      for (i = 1; i <= n; i++) printf "%-18s %10.2f %7.2fx\n", order[i], t[order[i]] / 1e9, t[order[i]] / t["bare-listing"]
    }' 2>/dev/null
  exit
fi
if [[ "${1:-}" == copy ]]; then
  go test -run '^$' -bench 'BenchmarkImageCopy' -benchtime 1x -timeout 60m ./services/converter/test/integration/ |
    grep -E '^Benchmark' | tee /dev/stderr | awk '
    {
      split($1, p, "/"); way = p[4]; sub(/-[0-9]+$/, "", way); key = p[2] "/" p[3]
      for (i = 2; i < NF; i++) { if ($(i+1) == "MB/s") mbs = $i; if ($(i+1) == "peak-rss-MiB") rss = $i }
      if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
      rows[key] = rows[key] " " way; speed[key "/" way] = mbs; mem[key "/" way] = rss
    }
    END {
      printf "\n%-18s %-16s %8s %9s %12s\n", "image/link", "way", "MB/s", "x pipe", "peak RSS MiB"
      for (k = 1; k <= nk; k++) {
        n = split(rows[keys[k]], w, " ")
        for (i = 1; i <= n; i++) printf "%-18s %-16s %8.1f %8.2fx %12.0f\n", keys[k], w[i], speed[keys[k] "/" w[i]], speed[keys[k] "/" w[i]] / speed[keys[k] "/pipe"], mem[keys[k] "/" w[i]]
      }
    }' 2>/dev/null
  exit
fi
if [[ "${1:-}" == warm ]]; then
  go test -run '^$' -bench 'BenchmarkChunkReuse' -benchtime 1x ./services/converter/internal/imagecopy/ | grep -E '^Benchmark'
  go test -run '^$' -bench 'BenchmarkWarmCutover' -benchtime 1x -timeout 30m -v ./services/converter/test/integration/ |
    grep -E '^Benchmark|image [0-9]+ MiB' | sed 's/^ *//'
  exit
fi
if [[ "${1:-}" == p2v ]]; then
  # The fixture disk converted, against qemu-img convert of the same disk (and
  # virt-v2v with HIKKOSHI_BENCH_VIRT_V2V=1, where it is installed), same run.
  HIKKOSHI_P2V=1 go test -run '^$' -bench 'BenchmarkP2V' -benchtime "${2:-3}x" -timeout 60m ./services/converter/internal/p2v/ | grep -E '^Benchmark'
  exit
fi
if [[ "${1:-}" == lbaas ]]; then
  go test -run '^$' -bench 'BenchmarkCreate20Concurrent' -benchtime 1x -count 1 ./services/lbaas/test/contract/ |
    grep -E '^Benchmark|create modes' | sed 's/^ *//'
  exit
fi
# scripts/bench.sh grpc [count] is the same as scripts/bench.sh [count].
[[ "${1:-}" == grpc ]] && shift
count="${1:-5}"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench 'BenchmarkRegistry' -benchtime 2s -count "$count" \
  ./services/inventory/test/contract/ 2>/dev/null | tee "$out" | grep -E '^Benchmark' || true
awk '
  # BenchmarkRegistry/get-2  N  X ns/op  312.1 etcd-get-µs  650.2 grpc-get-µs ...
  /^BenchmarkRegistry\// {
    for (i = 3; i < NF; i++) if ($(i + 1) ~ /-µs$/) { name = $(i + 1); sub(/-µs$/, "", name); v[name] = v[name] " " $i }
  }
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    printf "\n%-32s %12s %12s %8s\n", "call", "median µs", "baseline µs", "ratio"
    np = split("grpc-health:etcd-get grpc-get:etcd-get grpc-list-50:etcd-range-50 grpc-list-50-filtered:etcd-range-50-f grpc-health-embedded:etcd-get grpc-get-embedded:etcd-get grpc-list-50-embedded:etcd-range-50 grpc-list-50-filtered-embedded:etcd-range-50-f", pairs, " ")
    for (i = 1; i <= np; i++) {
      split(pairs[i], q, ":")
      if (!(q[1] in v) || !(q[2] in v)) continue
      m = median(v[q[1]]); base = median(v[q[2]])
      printf "%-32s %12.1f %12.1f %7.2fx\n", q[1], m, base, m / base
    }
  }' "$out"
