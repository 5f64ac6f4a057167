#!/usr/bin/env bash
# devpki.sh makes the development PKI of the services' mutual TLS in DIR (default
# .cache/pki): a CA, a certificate and key per identity (inventory, converter,
# netbridge, lbaas, collector, viewer, operator, admin) and policy.yaml, the
# authorization policy giving each its role. Files already there are kept.
#   scripts/devpki.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./platform/cmd/hikkoshi-pki "${1:-.cache/pki}"
