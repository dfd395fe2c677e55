#!/usr/bin/env bash
# Installs everything the shop and its tests need, from the package registries only:
# the Python venv (pinned by requirements.lock), the npm toolchain (foundry binaries, solcjs,
# OpenZeppelin, pinned by package-lock.json) and a `solc` command. Idempotent: each part is
# redone only when its inputs changed, so `make run` and `make test` can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
solc_version=$(sed -n "s/^  version: *\([0-9.]*\)$/\1/p" ape-config.yaml)  # solidity.version

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required but not installed ($2)" >&2; exit 1; }
}
need python3 "Python 3.11 or newer"
need node "Node.js 18 or newer"
need npm "npm, with Node.js"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python 3.11+ required" >&2; exit 1; }

# A stamp holds the hash of a part's inputs; the part is redone when the hash differs.
fresh() { [ -f "$1" ] && [ "$(cat "$1")" = "$(cat "${@:2}" | sha256sum)" ]; }
stamp() { cat "${@:2}" | sha256sum > "$1"; }

if ! fresh .venv/.installed requirements.lock pyproject.toml; then
  echo "setup: installing Python packages into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.lock
  .venv/bin/python -m pip install --quiet --no-deps -e .
  stamp .venv/.installed requirements.lock pyproject.toml
fi

if ! fresh node_modules/.installed package-lock.json; then
  echo "setup: installing npm packages (foundry, solc, OpenZeppelin)"
  npm ci --no-audit --no-fund --loglevel=error
  stamp node_modules/.installed package-lock.json
fi

mkdir -p .toolchain/bin
for tool in anvil forge cast; do
  ln -sfn "$root/node_modules/@foundry-rs/$tool-linux-amd64/bin/$tool" ".toolchain/bin/$tool"
done

# A native solc of the pinned version wins; otherwise the shim over solcjs. Our own bin folders
# are not searched: .venv/bin/solc is solc-select's (a slither dependency), which downloads.
native_solc=$(PATH=$(echo "$PATH" | tr ':' '\n' | grep -vxE "$root/(\.toolchain|\.venv)/bin" | paste -sd:) \
  command -v solc || true)
if [ -n "$native_solc" ] && timeout 10 "$native_solc" --version 2>/dev/null | grep -q "Version: $solc_version+"; then
  solc_target=$native_solc
else
  solc_target=$root/toolchain/solc.js
fi
ln -sfn "$solc_target" .toolchain/bin/solc
# py-solc-x and ape-solidity look for installed compilers in ~/.solcx.
mkdir -p "$HOME/.solcx"
ln -sfn "$solc_target" "$HOME/.solcx/solc-v$solc_version"

# The web pages' libraries, copied from node_modules so that the shop serves them itself (no CDN).
vendor=backend/liandong/web/static/vendor
mkdir -p "$vendor"
while read -r source target; do
  cmp -s "node_modules/$source" "$vendor/$target" || cp "node_modules/$source" "$vendor/$target"
done <<'FILES'
ethers/dist/ethers.min.js ethers.min.js
ethers/LICENSE.md ethers.LICENSE.md
chart.js/dist/chart.umd.min.js chart.umd.min.js
chart.js/LICENSE.md chart.js.LICENSE.md
FILES

# Debian's Chromium for the browser tests (tests/web drive it with Playwright; no browser download),
# and a CJK font so that their screenshots show the Chinese texts.
if [ ! -x /usr/bin/chromium ] || [ ! -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's chromium and fonts-wqy-microhei"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei
  else
    echo "setup: as root, apt-get install chromium fonts-wqy-microhei (tests/web skip without chromium)" >&2
  fi
fi
