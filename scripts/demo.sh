#!/usr/bin/env bash
# demo.sh: the TV guide in front of mongotap. Starts jongodb and mongotap, seeds the guide,
# requests its listing page lazily and with select_related(), prints what each page cost and
# mongotap's N+1 report, then shows CI mode: `mongotap run` fails the guide's test on the lazy
# page and passes it with select_related(). Stops everything. Safe to run again right away.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=/usr/bin/python3

scripts/setup.sh
# MONGOTAP_BIN runs an already built binary instead of building build/
if [ -n "${MONGOTAP_BIN:-}" ]; then
    BIN=$MONGOTAP_BIN
else
    scripts/build.sh normal >/dev/null
    BIN=build/proxy/mongotap
fi
JONGODB=node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb
[ -x "$BIN" ] || { echo "demo: $BIN was not built" >&2; exit 1; }

WORK=$(mktemp -d)
JONGODB_PID=""
MONGOTAP_PID=""
cleanup() {
    local rc=$?
    if [ -n "$MONGOTAP_PID" ] && kill -0 "$MONGOTAP_PID" 2>/dev/null; then
        kill -TERM "$MONGOTAP_PID" 2>/dev/null || true
        wait "$MONGOTAP_PID" 2>/dev/null || rc=$?
    fi
    if [ -n "$JONGODB_PID" ] && kill -0 "$JONGODB_PID" 2>/dev/null; then
        kill -TERM "$JONGODB_PID" 2>/dev/null || true
        wait "$JONGODB_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The usual ports when free, otherwise any free one (printed below).
port_or_free() {
    "$PY" - "$1" <<'EOF'
import socket, sys
want = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
try:
    s.bind(("127.0.0.1", want))
except OSError:
    s.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# Waits (up to $3 seconds) for a line matching $2 in file $1 while process $4 runs.
wait_for_line() {
    local file=$1 regex=$2 limit=$3 pid=$4 i
    for ((i = 0; i < limit * 20; i++)); do
        grep -qE "$regex" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "demo: no line matching '$regex' from pid $pid:" >&2
    cat "$file" >&2
    return 1
}

DB_PORT=$(port_or_free 27017)
LISTEN_PORT=$(port_or_free 27018)
ADMIN_PORT=$(port_or_free 27080)
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
export MONGODB_URI="mongodb://127.0.0.1:$LISTEN_PORT/tvguide?directConnection=true"

"$JONGODB" --port="$DB_PORT" >"$WORK/jongodb.log" 2>&1 &
JONGODB_PID=$!
wait_for_line "$WORK/jongodb.log" '^JONGODB_URI=' 60 "$JONGODB_PID"
echo "demo: jongodb on 127.0.0.1:$DB_PORT"

"$BIN" --listen "127.0.0.1:$LISTEN_PORT" --upstream "127.0.0.1:$DB_PORT" \
    --admin "127.0.0.1:$ADMIN_PORT" 2>"$WORK/mongotap.log" &
MONGOTAP_PID=$!
wait_for_line "$WORK/mongotap.log" 'ready listen=' 30 "$MONGOTAP_PID"
echo "demo: mongotap on 127.0.0.1:$LISTEN_PORT (admin $ADMIN_URL), upstream 127.0.0.1:$DB_PORT"
echo "demo: app uses $MONGODB_URI"

"$PY" examples/tvguide/seed.py
echo
"$PY" examples/tvguide/visit.py --admin "$ADMIN_URL"
echo

# Windows close after the connection's idle gap; the visit script has exited, so they have.
echo "demo: mongotap report --admin $ADMIN_URL --format markdown"
echo
if ! "$BIN" report --admin "$ADMIN_URL" --format markdown 2>"$WORK/report.err"; then
    echo "demo: 'mongotap report' failed ($(head -c 300 "$WORK/report.err")); the admin API's report:"
    "$PY" - "$ADMIN_URL/api/report?format=markdown" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())
EOF
fi

# CI mode: the same page under test, through a proxy that `mongotap run` starts for the test
# alone (upstream: the old value of MONGODB_URI, here jongodb itself).
DIRECT_URI="mongodb://127.0.0.1:$DB_PORT/tvguide?directConnection=true"
expect_run() {
    local want=$1 rc=0
    shift
    echo
    echo "demo: MONGODB_URI=$DIRECT_URI mongotap run -- python3 examples/tvguide/listing_test.py $*"
    MONGODB_URI="$DIRECT_URI" "$BIN" run -- "$PY" examples/tvguide/listing_test.py "$@" || rc=$?
    echo "demo: mongotap run exited $rc"
    [ "$rc" -eq "$want" ] || { echo "demo: expected exit $want" >&2; exit 1; }
}
expect_run 1                   # the lazy page: a new N+1 fails the build
expect_run 0 --select-related  # fixed: it passes
echo
echo "demo: stopping mongotap and jongodb"
