#!/usr/bin/env bash
# profile.sh: where mongotap's CPU time goes. Starts mt-stub-upstream and mongotap (pinned to one
# CPU, as run.sh pins them), loads it with mt-loadgen from the other CPU, records mongotap with
# `perf record` and prints the hottest symbols, then the same by library.
#
#   bench/profile.sh                       find1, 16 connections, default windows
#   bench/profile.sh --mode find100 --conns 64 --seconds 10
#   bench/profile.sh -- --window-gap-ms 1 --window-max-ms 10
#                                          mongotap options after "--" (here: every detector
#                                          analyses a closed window every few requests)
#
# Needs perf (Debian linux-perf) and kernel.perf_event_paranoid <= 1, or root.
# MT_BUILD_DIR picks the build tree (default build/, RelWithDebInfo: symbols included);
# MT_BENCH_PIN and MT_BENCH_CPUS as for run.sh (bench/lib.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MT_BUILD_DIR:-$ROOT/build}
MODE=find1
CONNS=16
SECONDS_RECORDED=5
TOP=30
while [ $# -gt 0 ]; do
    case "$1" in
    --mode) MODE=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --seconds) SECONDS_RECORDED=$2; shift 2 ;;
    --top) TOP=$2; shift 2 ;;
    --) shift; break ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

command -v perf >/dev/null || { echo "profile.sh: perf not found (apt-get install linux-perf)" >&2; exit 1; }
for bin in "$BUILD/bench/mt-stub-upstream" "$BUILD/bench/mt-loadgen" "$BUILD/proxy/mongotap"; do
    [ -x "$bin" ] || { echo "profile.sh: $bin missing: run scripts/build.sh normal" >&2; exit 1; }
done

. "$ROOT/bench/lib.sh"
bench_workdir mt-profile
start_stub stub
start_mongotap mongotap "$@"

"${PIN_LG[@]}" "$BUILD/bench/mt-loadgen" --target "$MONGOTAP_ADDR" --mode "$MODE" --conns "$CONNS" \
    --seconds $((SECONDS_RECORDED + 2)) --warmup 1 --json >"$WORK/loadgen.json" 2>"$WORK/loadgen.log" &
LG_PID=$!
PIDS+=("$LG_PID")
sleep 1 # the load generator's warm-up: nothing to wait on but the clock
perf record -q -F 1999 -g -p "$MONGOTAP_PID" -o "$WORK/perf.data" -- sleep "$SECONDS_RECORDED" \
    2>"$WORK/perf.log" || { cat "$WORK/perf.log" >&2; exit 1; }
wait "$LG_PID" || { cat "$WORK/loadgen.log" >&2; exit 1; }

echo "# mongotap $*: $MODE, $CONNS connections; $(cat "$WORK/loadgen.json")"
echo "# by library (self time)"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n 12
echo "# hottest symbols (self time)"
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -n "$TOP"
