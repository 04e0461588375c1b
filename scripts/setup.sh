#!/usr/bin/env bash
# setup.sh: installs what mongotap needs to build, test and run its demo on Debian 12.
# Idempotent and quick when everything is present: apt only runs for missing packages,
# npm only when the lock file changed. Exports nothing; prints one line per step.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

APT_PACKAGES=(
    cmake gcc clang clang-format make pkg-config
    libuv1-dev libbson-dev libcriterion-dev libh2o-dev libncurses-dev
    zlib1g-dev libsnappy-dev libzstd-dev libmongoc-dev libssl-dev libc-ares-dev
    python3-pymongo python3-mongoengine python3-flask python3-mockupdb python3-pytest
    nodejs npm haproxy prometheus tmux chromium fonts-dejavu-core libclang-rt-14-dev valgrind
    python3-yaml docker-compose man-db dpkg-dev
    openssl stunnel4 dnsmasq
)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Step 1: Debian packages. node and npm may come from another packaging of Node.js
# (which ships npm inside nodejs): a working command counts as installed, so that
# apt never tries to replace it.
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    case "$pkg" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    esac
    installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: apt: all ${#APT_PACKAGES[@]} packages present"
else
    echo "setup: apt: installing ${#missing[@]} missing package(s): ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    echo "setup: apt: installed ${missing[*]}"
fi

# Step 2: npm packages (the test server, the Node.js drivers, the browser driver) into
# the git-ignored node_modules/ beside package.json, exactly as package-lock.json says.
JONGODB="node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb"
STAMP="node_modules/.mongotap-lock.sha256"
want=$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ -x "$JONGODB" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "setup: npm: node_modules up to date with package-lock.json"
else
    echo "setup: npm: installing from package-lock.json into node_modules/"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    [ -x "$JONGODB" ] || { echo "setup: npm: $JONGODB missing after npm ci" >&2; exit 1; }
    echo "$want" >"$STAMP"
    echo "setup: npm: installed ($(node -e 'console.log(Object.keys(require("./package.json").dependencies).join(", "))'))"
fi
