#!/usr/bin/env bash
# valgrind.sh: runs the release build of mongotap under valgrind memcheck through one
# integration scenario (PyMongo CRUD, a lazy N+1, every admin route, hostile messages, SIGTERM)
# and fails on any memory error or any definitely or indirectly lost block. Builds nothing.
#
#   tests/valgrind.sh                 uses build/proxy/mongotap (scripts/build.sh normal)
#   MT_VALGRIND_BIN=path tests/valgrind.sh
#   MT_VALGRIND_LOG=path              keep valgrind's full log there
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${MT_VALGRIND_BIN:-build/proxy/mongotap}

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "valgrind.sh: $BIN not found: run scripts/build.sh normal" >&2; exit 1; }
if grep -q "__asan_init" "$BIN" 2>/dev/null; then
    echo "valgrind.sh: $BIN is an ASan build; valgrind needs the normal build" >&2
    exit 1
fi

args=("$BIN")
[ -z "${MT_VALGRIND_LOG:-}" ] || args+=(--keep-log "$MT_VALGRIND_LOG")
exec /usr/bin/python3 tests/integration/faults/valgrind_scenario.py "${args[@]}"
