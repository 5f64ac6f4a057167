#!/usr/bin/env bash
# browser.sh installs Debian's Chromium for the console's browser test
# (services/inventory/test/console drives it headless through chromedp).
# Idempotent: nothing to do when /usr/bin/chromium is there.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) present"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
t0=$SECONDS
if ! apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; then
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends chromium >/dev/null
fi
echo "browser: $(/usr/bin/chromium --version 2>/dev/null) installed in $((SECONDS - t0)) s"
