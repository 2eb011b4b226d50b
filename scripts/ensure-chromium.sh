#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed, for the browser test of /docs (test/neuron/ApiDocs.browser.test.ts).
# Prints the browser's path. Installs it with apt-get when missing (root needed, as on CI); fails loudly otherwise.
set -euo pipefail
find_chromium() {
  for candidate in "${CHROMIUM_PATH:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}
if path=$(find_chromium); then echo "$path"; exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "ensure-chromium: chromium is not installed and this user cannot install it (run: sudo apt-get install -y chromium)" >&2
  exit 1
fi
echo "ensure-chromium: installing Debian's chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# Both steps print to stderr: stdout carries only the path, for the caller to read.
apt-get update -qq >&2 || { echo "ensure-chromium: apt-get update failed" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends chromium >&2 || { echo "ensure-chromium: apt-get install chromium failed" >&2; exit 1; }
if path=$(find_chromium); then echo "$path"; exit 0; fi
echo "ensure-chromium: chromium is still missing after apt-get install" >&2
exit 1
