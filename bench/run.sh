#!/usr/bin/env bash
# run.sh: the comparison benchmark. Starts mt-stub-upstream, HAProxy (TCP mode, one thread) and
# mongotap in front of it, runs mt-loadgen against the three targets in interleaved rounds, measures
# mongotap's memory with idle connections and under many distinct query shapes, and prints a table.
#
#   bench/run.sh                 full run (3 rounds x 5 s per point, about 15 minutes)
#   bench/run.sh --quick         a tiny run of every code path (the smoke test uses it)
#   bench/run.sh --help          all options
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MT_BUILD_DIR:-$ROOT/build}
LOADGEN=$BUILD/bench/mt-loadgen
STUB=$BUILD/bench/mt-stub-upstream
MONGOTAP=$BUILD/proxy/mongotap
PYTHON=${PYTHON:-python3}

ROUNDS=3
SECONDS_PER_POINT=5
WARMUP=1
MODES="find1 find100 insert1k big4m driver"
CONNS="1 16 64"
DRIVER_MAX_CONNS=16
IDLE_CONNS=10000
SHAPES=1000000
SHAPES_FIRST=100000
MEMORY=1
OUT=""

usage() {
    cat <<'EOF'
usage: bench/run.sh [options]
  --quick            1 round, 1 s per point, 8 connections, 4 modes, small memory tests
  --rounds N         rounds over every point (default 3); targets are interleaved per point
  --seconds S        measured seconds per point (default 5)
  --warmup S         unmeasured seconds before each point (default 1)
  --modes "M ..."    of find1 find100 insert1k big4m driver (default: all)
  --conns "N ..."    connection counts (default "1 16 64"; driver uses those <= 16)
  --idle-conns N     idle connections for the memory test (default 10000)
  --shapes N         distinct shapes for the memory test (default 1000000; RSS also read at 100000)
  --no-memory        skip both memory tests
  --out DIR          keep results.jsonl, table.md and the logs in DIR
environment:
  MT_BUILD_DIR              build tree with bench/ and proxy/ (default: build)
  MT_BENCH_SKIP_MONGOTAP=1  compare direct and haproxy only (while mongotap is not built)
  MT_BENCH_PIN=0            do not pin processes to CPUs
  MT_BENCH_CPUS="A B"       CPU of the load generator, CPU of the proxy and stub (default "0 1")
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick)
        ROUNDS=1 SECONDS_PER_POINT=1 WARMUP=0.1 CONNS="8" MODES="find1 find100 big4m driver"
        IDLE_CONNS=1000 SHAPES=20000 SHAPES_FIRST=2000
        shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER_POINT=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --no-memory) MEMORY=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ "$SHAPES_FIRST" -lt "$SHAPES" ] || SHAPES_FIRST=$((SHAPES / 10))

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

USE_MONGOTAP=1
[ "${MT_BENCH_SKIP_MONGOTAP:-0}" = 1 ] && USE_MONGOTAP=0
for tool in "$LOADGEN" "$STUB"; do
    [ -x "$tool" ] || die "$tool not found: build first (scripts/build.sh normal)"
done
if [ $USE_MONGOTAP = 1 ] && [ ! -x "$MONGOTAP" ]; then
    die "$MONGOTAP not found (set MT_BENCH_SKIP_MONGOTAP=1 to compare direct and haproxy only)"
fi
command -v haproxy >/dev/null || die "haproxy not found (apt-get install haproxy)"
command -v "$PYTHON" >/dev/null || die "python3 not found (needed for the table)"

# Every socket of the idle test is a descriptor in the load generator and two (client and
# upstream) in the proxy: take all the hard limit allows and size the test to fit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
IDLE_MAX=$(((FD_LIMIT - 200) / 2))
HAPROXY_MAXCONN=$IDLE_MAX # haproxy refuses to start if 2 x maxconn does not fit the limit
IDLE_NOTE=""
if [ "$IDLE_CONNS" -gt "$IDLE_MAX" ]; then
    IDLE_NOTE="capped from $IDLE_CONNS by the descriptor limit ($FD_LIMIT)"
    log "idle connections $IDLE_NOTE"
    IDLE_CONNS=$IDLE_MAX
fi

# Pinning: the load generator gets one CPU, the proxy (and the stub, which costs little) the
# other. Unpinned, a round trip costs one or two cross-CPU wake-ups at random, which on a VM can
# be worth 50 us each and swamps the difference between proxies at one connection.
PIN_LG=()
PIN_SRV=()
if [ "${MT_BENCH_PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    read -r CPU_LG CPU_SRV <<<"${MT_BENCH_CPUS:-0 1}"
    PIN_LG=(taskset -c "$CPU_LG")
    PIN_SRV=(taskset -c "$CPU_SRV")
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mt-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$OUT" ]; then
        mkdir -p "$OUT"
        cp -r "$WORK"/. "$OUT"/ 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for_line FILE REGEX PID SECONDS: the processes below announce readiness on a line.
wait_for_line() {
    local file=$1 re=$2 pid=$3 limit=$4 i
    for ((i = 0; i < limit * 20; i++)); do
        grep -qE "$re" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_stub() {
    "${PIN_SRV[@]}" "$STUB" --port 0 >"$WORK/stub.out" 2>"$WORK/stub.log" &
    STUB_PID=$!
    PIDS+=("$STUB_PID")
    wait_for_line "$WORK/stub.out" '^ready port=' "$STUB_PID" 10 || die "stub did not start: $(cat "$WORK/stub.log")"
    STUB_PORT=$(sed -n 's/^ready port=//p' "$WORK/stub.out")
}

# start_haproxy NAME MAXCONN: sets HAPROXY_PID and HAPROXY_ADDR. In daemon mode (-D) haproxy
# returns only once its listener is bound, which is the readiness signal.
start_haproxy() {
    local name=$1 maxconn=$2 port
    port=$(free_port)
    cat >"$WORK/$name.cfg" <<EOF
global
    nbthread 1
    maxconn $maxconn
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    maxconn $maxconn
frontend mongo
    bind 127.0.0.1:$port
    default_backend stub
backend stub
    server stub 127.0.0.1:$STUB_PORT maxconn $maxconn
EOF
    "${PIN_SRV[@]}" haproxy -D -p "$WORK/$name.pid" -f "$WORK/$name.cfg" >"$WORK/$name.log" 2>&1 ||
        die "haproxy did not start: $(cat "$WORK/$name.log")"
    HAPROXY_PID=$(head -n1 "$WORK/$name.pid")
    PIDS+=("$HAPROXY_PID")
    HAPROXY_ADDR=127.0.0.1:$port
}

# start_mongotap NAME [ARGS...]: sets MONGOTAP_PID, MONGOTAP_ADDR and MONGOTAP_ADMIN.
start_mongotap() {
    local name=$1 line
    shift
    "${PIN_SRV[@]}" "$MONGOTAP" --listen 127.0.0.1:0 --upstream "127.0.0.1:$STUB_PORT" \
        --admin 127.0.0.1:0 "$@" 2>"$WORK/$name.log" &
    MONGOTAP_PID=$!
    PIDS+=("$MONGOTAP_PID")
    wait_for_line "$WORK/$name.log" 'ready listen=' "$MONGOTAP_PID" 15 ||
        die "mongotap did not start: $(tail -n 5 "$WORK/$name.log")"
    line=$(grep -m1 'ready listen=' "$WORK/$name.log")
    MONGOTAP_ADDR=$(sed -E 's/.*ready listen=([^ ,]+).*/\1/' <<<"$line")
    MONGOTAP_ADMIN=$(sed -E 's/.*admin=([^ ]+).*/\1/' <<<"$line")
}

stop_pid() {
    local keep=() p
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

RESULTS=$WORK/results.jsonl
: >"$RESULTS"

# run_point ROUND TARGET ADDR MODE CONNS: one loadgen run, one JSON line in results.jsonl.
run_point() {
    local round=$1 target=$2 addr=$3 mode=$4 conns=$5 line args
    if [ "$mode" = driver ]; then
        args=(--driver mongoc --mode find1)
    else
        args=(--mode "$mode")
    fi
    line=$("${PIN_LG[@]}" "$LOADGEN" --target "$addr" --label "$target" "${args[@]}" --conns "$conns" \
        --seconds "$SECONDS_PER_POINT" --warmup "$WARMUP" --json 2>>"$WORK/loadgen.log" | tail -n1) || true
    if [ -z "$line" ]; then
        line="{\"target\": \"$target\", \"mode\": \"${args[-1]}\", \"conns\": $conns, \"requests\": 0, \"errors\": 1, \"failed\": true}"
    fi
    if [ "$mode" = driver ]; then
        line=${line/\"mode\" : \"find1\"/\"mode\" : \"driver\"}
    fi
    echo "${line%\}}, \"round\" : $round }" >>"$RESULTS"
    "$PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1])
print("bench:   %-8s %8.0f req/s  p50 %8.1f us  p99 %8.1f us  %7.1f MB/s  errors %d" % (
    r["target"], r.get("req_per_s", 0), r.get("p50_us", 0), r.get("p99_us", 0),
    r.get("bytes_per_s", 0) / 1e6, r.get("errors", 0)))' "$(tail -n1 "$RESULTS")" >&2
}

meta() { echo "{\"kind\" : \"$1\", $2 }" >>"$RESULTS"; }

BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
case "$BUILD_TYPE" in
Release | RelWithDebInfo) ;;
*) log "warning: $BUILD is a '${BUILD_TYPE:-default}' build; figures are meant for Release or RelWithDebInfo" ;;
esac
meta run "\"rounds\" : $ROUNDS, \"seconds\" : $SECONDS_PER_POINT, \"warmup\" : $WARMUP, \"build_type\" : \"$BUILD_TYPE\", \"cpus\" : $(nproc), \"pinned\" : $([ ${#PIN_LG[@]} -gt 0 ] && echo true || echo false), \"haproxy\" : \"$(haproxy -v 2>/dev/null | head -n1 | awk '{print $3}')\""

# ---- throughput and latency ----
start_stub
log "stub upstream on 127.0.0.1:$STUB_PORT"
start_haproxy haproxy "$HAPROXY_MAXCONN"
log "haproxy on $HAPROXY_ADDR (pid $HAPROXY_PID)"
TARGETS=("direct 127.0.0.1:$STUB_PORT" "haproxy $HAPROXY_ADDR")
if [ $USE_MONGOTAP = 1 ]; then
    start_mongotap mongotap
    log "mongotap on $MONGOTAP_ADDR, admin $MONGOTAP_ADMIN (pid $MONGOTAP_PID)"
    TARGETS+=("mongotap $MONGOTAP_ADDR")
fi

for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        for conns in $CONNS; do
            if [ "$mode" = driver ] && [ "$conns" -gt "$DRIVER_MAX_CONNS" ]; then
                continue
            fi
            log "round $round/$ROUNDS: $mode, $conns connections"
            # rotate the order of the targets each round so none always runs first
            n=${#TARGETS[@]}
            for ((k = 0; k < n; k++)); do
                read -r name addr <<<"${TARGETS[$(((k + round - 1) % n))]}"
                run_point "$round" "$name" "$addr" "$mode" "$conns"
            done
        done
    done
done

# ---- memory ----
if [ $MEMORY = 1 ]; then
    # idle_test NAME PID ADDR: RSS of a proxy before and after IDLE_CONNS connections that each
    # said hello once and then stay open.
    idle_test() {
        local name=$1 pid=$2 addr=$3 before after lg ready
        before=$(rss_kib "$pid")
        "${PIN_LG[@]}" "$LOADGEN" --target "$addr" --label "$name" --mode idle --conns "$IDLE_CONNS" \
            --json >"$WORK/idle-$name.out" 2>>"$WORK/loadgen.log" &
        lg=$!
        PIDS+=("$lg")
        wait_for_line "$WORK/idle-$name.out" '^ready idle conns=' "$lg" 120 ||
            die "idle connections to $name did not come up"
        ready=$(sed -n 's/^ready idle conns=//p' "$WORK/idle-$name.out")
        after=$(rss_kib "$pid")
        stop_pid "$lg"
        meta idle_rss "\"target\" : \"$name\", \"conns\" : $ready, \"asked\" : $IDLE_CONNS, \"note\" : \"$IDLE_NOTE\", \"rss_before_kib\" : $before, \"rss_after_kib\" : $after, \"kib_per_conn\" : $("$PYTHON" -c "print(round(($after - $before) / max($ready, 1), 2))")"
        log "idle: $name: $ready connections, RSS $before -> $after KiB"
    }

    start_haproxy haproxy-idle "$HAPROXY_MAXCONN"
    idle_test haproxy "$HAPROXY_PID" "$HAPROXY_ADDR"
    stop_pid "$HAPROXY_PID"
    if [ $USE_MONGOTAP = 1 ]; then
        start_mongotap mongotap-idle --max-connections $((IDLE_CONNS + 100))
        idle_test mongotap "$MONGOTAP_PID" "$MONGOTAP_ADDR"
        stop_pid "$MONGOTAP_PID"

        # Shapes: a fresh mongotap with its default --max-shapes, RSS read with no connection open.
        start_mongotap mongotap-shapes
        wait_idle() {
            local i
            for ((i = 0; i < 200; i++)); do
                curl -fsS "http://$MONGOTAP_ADMIN/api/stats?limit=0" 2>/dev/null |
                    "$PYTHON" -c 'import json, sys; sys.exit(json.load(sys.stdin)["connections"]["active"] != 0)' &&
                    return 0
                sleep 0.05
            done
            log "warning: mongotap still reports active connections"
        }
        rss0=$(rss_kib "$MONGOTAP_PID")
        "${PIN_LG[@]}" "$LOADGEN" --target "$MONGOTAP_ADDR" --label mongotap --mode shapes --conns 4 \
            --count "$SHAPES_FIRST" --start 0 --json >>"$WORK/shapes.out" 2>>"$WORK/loadgen.log" || true
        wait_idle
        rss1=$(rss_kib "$MONGOTAP_PID")
        "${PIN_LG[@]}" "$LOADGEN" --target "$MONGOTAP_ADDR" --label mongotap --mode shapes --conns 4 \
            --count $((SHAPES - SHAPES_FIRST)) --start "$SHAPES_FIRST" --json >>"$WORK/shapes.out" \
            2>>"$WORK/loadgen.log" || true
        wait_idle
        rss2=$(rss_kib "$MONGOTAP_PID")
        sent=$("$PYTHON" -c 'import json, sys
print(sum(json.loads(l)["requests"] for l in open(sys.argv[1]) if l.startswith("{")))' "$WORK/shapes.out")
        errors=$("$PYTHON" -c 'import json, sys
print(sum(json.loads(l)["errors"] for l in open(sys.argv[1]) if l.startswith("{")))' "$WORK/shapes.out")
        meta shapes_rss "\"target\" : \"mongotap\", \"sent\" : $sent, \"errors\" : $errors, \"points\" : [[0, $rss0], [$SHAPES_FIRST, $rss1], [$SHAPES, $rss2]]"
        log "shapes: RSS $rss0 KiB at 0, $rss1 KiB at $SHAPES_FIRST, $rss2 KiB at $SHAPES ($errors errors)"
        stop_pid "$MONGOTAP_PID"
    fi
fi

"$PYTHON" "$ROOT/bench/summarize.py" "$RESULTS" | tee "$WORK/table.md"
