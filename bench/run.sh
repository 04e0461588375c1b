#!/usr/bin/env bash
# run.sh: the comparison benchmark. Starts mt-stub-upstream, HAProxy (TCP mode, one thread) and
# mongotap in front of it (twice: as configured by default, and with windows of 10 ms, so that
# every detector analyses a closed window every few requests), runs mt-loadgen against the targets
# in interleaved rounds, reading each proxy's CPU time around each point, counts mongotap's
# allocations per request, measures its memory with idle connections and under many distinct
# query shapes, and prints a table. The tls point runs find1 with TLS on both sides: a TLS stub,
# HAProxy with ssl on its bind and its server line, mongotap with --tls-listen and a tls=true
# upstream (certificates from tests/fixtures/make_certs.sh).
#
#   bench/run.sh                 full run (3 rounds x 5 s per point, about 22 minutes)
#   bench/run.sh --quick         a tiny run of every code path (the smoke test uses it)
#   bench/run.sh --help          all options
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MT_BUILD_DIR:-$ROOT/build}
LOADGEN=$BUILD/bench/mt-loadgen
PYTHON=${PYTHON:-python3}

ROUNDS=3
SECONDS_PER_POINT=5
WARMUP=1
MODES="find1 find100 insert1k big4m driver tls"
CONNS="1 16 64"
WINDOWS=1
ALLOCS=1
ALLOC_COUNT=20000
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
  --modes "M ..."    of find1 find100 insert1k big4m driver tls (default: all)
  --conns "N ..."    connection counts (default "1 16 64"; driver uses those <= 16)
  --idle-conns N     idle connections for the memory test (default 10000)
  --shapes N         distinct shapes for the memory test (default 1000000; RSS also read at 100000)
  --no-memory        skip both memory tests
  --no-windows       skip the mongotap target with 10 ms windows (detectors on every window)
  --no-allocs        skip the allocation count
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
        ROUNDS=1 SECONDS_PER_POINT=1 WARMUP=0.1 CONNS="8" MODES="find1 find100 big4m driver tls"
        IDLE_CONNS=300 SHAPES=6000 SHAPES_FIRST=1000 ALLOC_COUNT=2000
        shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER_POINT=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --no-memory) MEMORY=0; shift ;;
    --no-windows) WINDOWS=0; shift ;;
    --no-allocs) ALLOCS=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ "$SHAPES_FIRST" -lt "$SHAPES" ] || SHAPES_FIRST=$((SHAPES / 10))

T0=${EPOCHREALTIME:-0}
log() { printf 'bench: [%5.1fs] %s\n' "$(awk -v a="$T0" -v b="${EPOCHREALTIME:-0}" 'BEGIN { print b - a }')" "$*" >&2; }
. "$ROOT/bench/lib.sh"

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
# Resolve the interpreter once: a version manager's shim can cost a few hundred ms per call.
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')

# Every socket of the idle test is a descriptor in the load generator and two (client and
# upstream) in the proxy: take all the hard limit allows and size the test to fit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
IDLE_MAX=$(((FD_LIMIT - 200) / 2))
IDLE_NOTE=""
if [ "$IDLE_CONNS" -gt "$IDLE_MAX" ]; then
    IDLE_NOTE="capped from $IDLE_CONNS by the descriptor limit ($FD_LIMIT)"
    log "idle connections $IDLE_NOTE"
    IDLE_CONNS=$IDLE_MAX
fi
# haproxy refuses to start when 2 x maxconn does not fit the limit, and sizes its tables by it
HAPROXY_MAXCONN=$((IDLE_CONNS + 100 < IDLE_MAX ? IDLE_CONNS + 100 : IDLE_MAX))

bench_workdir mt-bench

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# /api/stats once mongotap has seen every connection close (or after 5 s: then as is).
admin_stats_when_idle() {
    local i body=""
    for ((i = 0; i < 100; i++)); do
        body=$(curl -fsS "http://$MONGOTAP_ADMIN/api/stats?limit=1" 2>/dev/null) || body=""
        if [ -n "$body" ] && "$PYTHON" -c 'import json, sys
sys.exit(json.loads(sys.argv[1])["connections"]["active"] != 0)' "$body" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    echo "$body"
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

# run_point ROUND TARGET ADDR PID MODE CONNS: one loadgen run, one JSON line in results.jsonl,
# with the CPU time PID (the proxy; the stub for direct) used during it.
run_point() {
    local round=$1 target=$2 addr=$3 pid=$4 mode=$5 conns=$6 line args u0 s0 u1 s1
    if [ "$mode" = driver ]; then
        args=(--driver mongoc --mode find1)
    elif [ "$mode" = tls ]; then
        args=(--tls "$CERTS/ca.pem" --mode find1)
    else
        args=(--mode "$mode")
    fi
    read -r u0 s0 <<<"$(cpu_ticks "$pid")"
    line=$("${PIN_LG[@]}" "$LOADGEN" --target "$addr" --label "$target" "${args[@]}" --conns "$conns" \
        --seconds "$SECONDS_PER_POINT" --warmup "$WARMUP" --json 2>>"$WORK/loadgen.log" | tail -n1) || true
    read -r u1 s1 <<<"$(cpu_ticks "$pid")"
    if [ -z "$line" ]; then
        line="{\"target\": \"$target\", \"mode\": \"${args[-1]}\", \"conns\": $conns, \"requests\": 0, \"errors\": 1, \"failed\": true}"
    fi
    if [ "$mode" = driver ] || [ "$mode" = tls ]; then
        line=${line/\"mode\" : \"find1\"/\"mode\" : \"$mode\"}
    fi
    # CPU time over the whole run, divided by every request of it (warm-up included)
    "$PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1])
ticks, hz = [int(x) for x in sys.argv[2:6]], int(sys.argv[6])
r["cpu_user_s"], r["cpu_sys_s"] = (ticks[1] - ticks[0]) / hz, (ticks[3] - ticks[2]) / hz
n = r.get("all_requests", 0)
r["cpu_us_per_req"] = (r["cpu_user_s"] + r["cpu_sys_s"]) * 1e6 / n if n > 0 else None
r["round"] = int(sys.argv[7])
print(json.dumps(r))' "$line" "$u0" "$u1" "$s0" "$s1" "$CLK_TCK" "$round" >>"$RESULTS"
    "$PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1])
cpu = r.get("cpu_us_per_req")
print("bench:   %-16s %8.0f req/s  p50 %8.1f us  p99 %8.1f us  %7.1f MB/s  cpu %s us/req  errors %d" % (
    r["target"], r.get("req_per_s", 0), r.get("p50_us", 0), r.get("p99_us", 0),
    r.get("bytes_per_s", 0) / 1e6, "%.1f" % cpu if cpu else "-", r.get("errors", 0)))' "$(tail -n1 "$RESULTS")" >&2
}

meta() { echo "{\"kind\" : \"$1\", $2 }" >>"$RESULTS"; }

BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
case "$BUILD_TYPE" in
Release | RelWithDebInfo) ;;
*) log "warning: $BUILD is a '${BUILD_TYPE:-default}' build; figures are meant for Release or RelWithDebInfo" ;;
esac
meta run "\"loadavg_start\" : $(cut -d' ' -f1 /proc/loadavg), \"rounds\" : $ROUNDS, \"seconds\" : $SECONDS_PER_POINT, \"warmup\" : $WARMUP, \"build_type\" : \"$BUILD_TYPE\", \"cpus\" : $(nproc), \"pinned\" : $([ ${#PIN_LG[@]} -gt 0 ] && echo true || echo false), \"haproxy\" : \"$(haproxy -v 2>/dev/null | head -n1 | awk '{print $3}')\""

# CPU time stolen by the hypervisor during the run: a noisy neighbour shows here first.
cpu_counters() { awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9 }' /proc/stat; }
read -r CPU_TOTAL0 CPU_STEAL0 <<<"$(cpu_counters)"

# ---- throughput and latency ----
start_stub
log "stub upstream on 127.0.0.1:$STUB_PORT"
start_haproxy haproxy "$HAPROXY_MAXCONN"
log "haproxy on $HAPROXY_ADDR (pid $HAPROXY_PID)"
TARGETS=("direct 127.0.0.1:$STUB_PORT $STUB_PID" "haproxy $HAPROXY_ADDR $HAPROXY_PID")
if [ $USE_MONGOTAP = 1 ]; then
    start_mongotap mongotap
    log "mongotap on $MONGOTAP_ADDR, admin $MONGOTAP_ADMIN (pid $MONGOTAP_PID)"
    TARGETS+=("mongotap $MONGOTAP_ADDR $MONGOTAP_PID")
    if [ $WINDOWS = 1 ]; then
        # A window closes 10 ms after it opened (every few requests of a connection under
        # load) and is analysed by every detector: the cost of detection, not just accounting.
        start_mongotap mongotap-windows --window-gap-ms 1 --window-max-ms 10
        log "mongotap-windows on $MONGOTAP_ADDR (pid $MONGOTAP_PID)"
        TARGETS+=("mongotap-windows $MONGOTAP_ADDR $MONGOTAP_PID")
    fi
fi
TLS_TARGETS=()
if [[ " $MODES " == *" tls "* ]]; then
    CERTS=$WORK/certs
    "$ROOT/tests/fixtures/make_certs.sh" "$CERTS" >/dev/null || die "cannot make the TLS certificates"
    cat "$CERTS/server.pem" "$CERTS/server.key" >"$CERTS/server-combined.pem"
    PLAIN_STUB_PORT=$STUB_PORT PLAIN_STUB_PID=$STUB_PID
    start_stub stub-tls --tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key"
    TLS_STUB_PORT=$STUB_PORT TLS_STUB_PID=$STUB_PID
    STUB_PORT=$PLAIN_STUB_PORT STUB_PID=$PLAIN_STUB_PID
    log "TLS stub upstream on 127.0.0.1:$TLS_STUB_PORT"
    start_haproxy haproxy-tls "$HAPROXY_MAXCONN" tls
    log "haproxy with ssl on both sides on $HAPROXY_ADDR (pid $HAPROXY_PID)"
    TLS_TARGETS=("direct 127.0.0.1:$TLS_STUB_PORT $TLS_STUB_PID" "haproxy $HAPROXY_ADDR $HAPROXY_PID")
    if [ $USE_MONGOTAP = 1 ]; then
        start_mongotap mongotap-tls --tls-listen 127.0.0.1:0 --tls-cert "$CERTS/server.pem" \
            --tls-key "$CERTS/server.key" \
            --upstream "mongodb://localhost:$TLS_STUB_PORT/?tls=true&tlsCAFile=$CERTS/ca.pem&directConnection=true"
        log "mongotap with TLS on both sides on $MONGOTAP_TLS_ADDR (pid $MONGOTAP_PID)"
        TLS_TARGETS+=("mongotap $MONGOTAP_TLS_ADDR $MONGOTAP_PID")
    fi
fi

for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        for conns in $CONNS; do
            if [ "$mode" = driver ] && [ "$conns" -gt "$DRIVER_MAX_CONNS" ]; then
                continue
            fi
            log "round $round/$ROUNDS: $mode, $conns connections"
            # rotate the order of the targets each round so none always runs first
            if [ "$mode" = tls ]; then
                targets=("${TLS_TARGETS[@]}")
            else
                targets=("${TARGETS[@]}")
            fi
            n=${#targets[@]}
            for ((k = 0; k < n; k++)); do
                read -r name addr pid <<<"${targets[$(((k + round - 1) % n))]}"
                run_point "$round" "$name" "$addr" "$pid" "$mode" "$conns"
            done
        done
    done
done

# ---- allocations ----
# mongotap under the counting allocator (mt-alloc-count.so): what a run of N requests and a run
# of 2N cost, counted once every connection has closed; the difference over N is what one
# request costs, connection set-up and teardown cancelled out.
ALLOC_LIB=$BUILD/bench/mt-alloc-count.so
if [ $ALLOCS = 1 ] && [ $USE_MONGOTAP = 1 ] && [ -f "$ALLOC_LIB" ]; then
    # alloc_counts: malloc + calloc + realloc + aligned, and free, so far
    alloc_counts() {
        local i
        rm -f "$WORK/allocs.txt"
        kill -USR2 "$MONGOTAP_PID"
        for ((i = 0; i < 100; i++)); do
            [ -f "$WORK/allocs.txt" ] && break
            sleep 0.02
        done
        awk '{ print $2 + $4 + $6 + $10, $8 }' "$WORK/allocs.txt"
    }
    alloc_series() {
        local label=$1 mode=$2 a0 f0 a1 f1 a2 f2 i
        shift 2
        MONGOTAP_ENV=("LD_PRELOAD=$ALLOC_LIB" "MT_ALLOC_COUNT_FILE=$WORK/allocs.txt")
        start_mongotap "alloc-$label" "$@"
        MONGOTAP_ENV=()
        "${PIN_LG[@]}" "$LOADGEN" --target "$MONGOTAP_ADDR" --mode "$mode" --conns 16 --count 2000 \
            >/dev/null 2>>"$WORK/loadgen.log" || true
        admin_stats_when_idle >/dev/null
        read -r a0 f0 <<<"$(alloc_counts)"
        for i in 1 2; do
            "${PIN_LG[@]}" "$LOADGEN" --target "$MONGOTAP_ADDR" --mode "$mode" --conns 16 \
                --count $((i * ALLOC_COUNT)) >/dev/null 2>>"$WORK/loadgen.log" || true
            admin_stats_when_idle >/dev/null
            if [ $i = 1 ]; then read -r a1 f1 <<<"$(alloc_counts)"; else read -r a2 f2 <<<"$(alloc_counts)"; fi
        done
        stop_pid "$MONGOTAP_PID"
        meta allocs "\"series\" : \"$label\", \"mode\" : \"$mode\", \"args\" : \"$*\", \"requests\" : $ALLOC_COUNT, \"allocs_n\" : $((a1 - a0)), \"frees_n\" : $((f1 - f0)), \"allocs_2n\" : $((a2 - a1)), \"frees_2n\" : $((f2 - f1))"
        log "allocations ($label): $((a1 - a0)) for $ALLOC_COUNT requests, $((a2 - a1)) for $((2 * ALLOC_COUNT))"
    }
fi

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

        # Shapes: RSS of a fresh mongotap (default --max-shapes) at 0, SHAPES_FIRST and SHAPES
        # commands that each have a new shape, read once its connections are closed; then the
        # same on another fresh mongotap with commands that all have one shape, as the control:
        # what the windows, histograms and allocator cost per command whatever the shape.
        shapes_series() {
            local mode=$1 label=$2 rss0 rss1 rss2 s0 s1 s2
            start_mongotap "mongotap-$label"
            s0=$(admin_stats_when_idle)
            rss0=$(rss_kib "$MONGOTAP_PID")
            "${PIN_LG[@]}" "$LOADGEN" --target "$MONGOTAP_ADDR" --label "$label" --mode "$mode" \
                --conns 4 --count "$SHAPES_FIRST" --start 0 --json >>"$WORK/$label.out" \
                2>>"$WORK/loadgen.log" || true
            s1=$(admin_stats_when_idle)
            rss1=$(rss_kib "$MONGOTAP_PID")
            "${PIN_LG[@]}" "$LOADGEN" --target "$MONGOTAP_ADDR" --label "$label" --mode "$mode" \
                --conns 4 --count $((SHAPES - SHAPES_FIRST)) --start "$SHAPES_FIRST" --json \
                >>"$WORK/$label.out" 2>>"$WORK/loadgen.log" || true
            s2=$(admin_stats_when_idle)
            rss2=$(rss_kib "$MONGOTAP_PID")
            stop_pid "$MONGOTAP_PID"
            meta shapes_rss "$("$PYTHON" - "$WORK/$label.out" "$label" "$rss0 $rss1 $rss2" \
                "$SHAPES_FIRST $SHAPES" "$s0" "$s1" "$s2" <<'PYEOF'
import json, sys
out, label, rss, counts, s0, s1, s2 = sys.argv[1:8]
runs = [json.loads(l) for l in open(out) if l.startswith("{")]
rss = [int(x) for x in rss.split()]
counts = [0] + [int(x) for x in counts.split()]
stats = [json.loads(s) if s.startswith("{") else {} for s in (s0, s1, s2)]
points = [{"commands": c, "rss_kib": r, "shapes_tracked": st.get("shapes_tracked"),
           "windows_closed": st.get("windows", {}).get("closed")}
          for c, r, st in zip(counts, rss, stats)]
body = json.dumps({"series": label, "sent": sum(r["requests"] for r in runs),
                   "errors": sum(r["errors"] for r in runs), "points": points})
print(body[1:-1])
PYEOF
)"
            log "shapes ($label): RSS $rss0 KiB at 0, $rss1 KiB at $SHAPES_FIRST, $rss2 KiB at $SHAPES"
        }
        shapes_series shapes distinct
        shapes_series sameshape control
    fi
fi
if [ $ALLOCS = 1 ] && [ $USE_MONGOTAP = 1 ]; then
    if [ -f "$ALLOC_LIB" ]; then
        alloc_series find1 find1
        alloc_series insert1k insert1k
        alloc_series find1-windows find1 --window-gap-ms 1 --window-max-ms 10
    else
        log "no $ALLOC_LIB: allocations not counted"
    fi
fi

read -r CPU_TOTAL1 CPU_STEAL1 <<<"$(cpu_counters)"
meta cpu "\"loadavg_end\" : $(cut -d' ' -f1 /proc/loadavg), \"steal_pct\" : $("$PYTHON" -c "print(round(100 * ($CPU_STEAL1 - $CPU_STEAL0) / max(1, $CPU_TOTAL1 - $CPU_TOTAL0), 1))")"

"$PYTHON" "$ROOT/bench/summarize.py" "$RESULTS" | tee "$WORK/table.md"
