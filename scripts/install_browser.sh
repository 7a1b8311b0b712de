#!/usr/bin/env bash
# Install a headless browser for the viewer's browser test (tests/analysis/viewer): Debian's chromium
# and chromium-driver, with apt-get, only when they are missing.  Idempotent and quiet: it prints one
# line, and exits 0 even when no browser can be installed (no root, no apt-get, no network), so that
# `make test` goes on and the browser test skips with the reason.
#
#   scripts/install_browser.sh          -> "[browser] ok: Chromium 150... / ChromeDriver 150..."
set -uo pipefail

have_browser() {
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}

report() {
  echo "[browser] ok: $(chromium --version 2>/dev/null | head -1) /" \
    "$(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
}

if have_browser; then
  report
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[browser] not installed: no apt-get on this system (install chromium and chromedriver yourself)"
  exit 0
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "[browser] not installed: apt-get needs root (run: sudo apt-get install chromium chromium-driver)"
    exit 0
  fi
fi
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale (a fresh container): update once, then install.
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >"$log" 2>&1; then
  "${SUDO[@]}" apt-get update -qq >>"$log" 2>&1
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >>"$log" 2>&1
fi
if have_browser; then
  report
  rm -f "$log"
else
  echo "[browser] not installed: apt-get failed (log: $log)"
fi
exit 0
