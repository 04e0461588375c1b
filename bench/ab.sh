#!/usr/bin/env bash
# ab.sh: HAProxy against one or more mongotap builds, point by point, with what each costs per
# request. Where run.sh gives the whole table, this answers one question well: is a change worth
# it, and where does its time go. Every target runs each round, in an order rotated per round
# (the place in a round can move a result by several per cent). Per point and target it prints requests/s, p99, user and system CPU time,
# voluntary and involuntary context switches, minor page faults (the proxy's, from /proc) and TCP
# segments sent (the whole machine's, /proc/net/snmp), each per request; then medians.
#
#   bench/ab.sh                                     HAProxy and build/ at 64 connections
#   bench/ab.sh --mongotap new=../wt/build/proxy/mongotap --conns 16 --rounds 6
#   bench/ab.sh --env new=MALLOC_ARENA_MAX=1 --mongotap new=build/proxy/mongotap
#   bench/ab.sh -- --window-gap-ms 1 --window-max-ms 10
#                                                    mongotap options after "--", for every build
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${MT_BUILD_DIR:-$ROOT/build}
LOADGEN=$BUILD/bench/mt-loadgen
PYTHON=${PYTHON:-python3}
MODE=find1
CONNS=64
ROUNDS=5
SECONDS_PER_POINT=4
WARMUP=1
BUILDS=()
declare -A BUILD_ENV=()

usage() {
    cat <<'EOF'
usage: bench/ab.sh [options] [-- mongotap options]
  --mongotap NAME=PATH   a mongotap binary to compare (repeatable; default: mongotap=build's)
  --env NAME=VAR=VALUE   environment for the build called NAME (repeatable)
  --mode M               mt-loadgen mode: find1 find100 insert1k big4m (default find1)
  --conns N              connections (default 64)
  --rounds N             rounds over every target (default 5)
  --seconds S            measured seconds per point (default 4), after 1 s of warm-up
environment: MT_BUILD_DIR (the loadgen and stub), MT_BENCH_PIN, MT_BENCH_CPUS as for run.sh
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --mongotap) BUILDS+=("$2"); shift 2 ;;
    --env) BUILD_ENV[${2%%=*}]+="${BUILD_ENV[${2%%=*}]:+ }${2#*=}"; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER_POINT=$2; shift 2 ;;
    --) shift; break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "ab.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ ${#BUILDS[@]} -gt 0 ] || BUILDS=("mongotap=$BUILD/proxy/mongotap")
for name in "${!BUILD_ENV[@]}"; do
    printf '%s\n' "${BUILDS[@]}" | grep -q "^$name=" || { echo "ab.sh: --env for $name, which no --mongotap names" >&2; exit 2; }
done

. "$ROOT/bench/lib.sh"
for tool in "$LOADGEN" "$STUB"; do
    [ -x "$tool" ] || die "$tool not found: build first (scripts/build.sh normal)"
done
command -v haproxy >/dev/null || die "haproxy not found (apt-get install haproxy)"
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')

bench_workdir mt-ab
start_stub stub
start_haproxy haproxy 1000
TARGETS=("haproxy $HAPROXY_ADDR $HAPROXY_PID")
for b in "${BUILDS[@]}"; do
    name=${b%%=*}
    [ -x "${b#*=}" ] || die "$name: ${b#*=} is not an executable"
    read -r -a MONGOTAP_ENV <<<"${BUILD_ENV[$name]:-}"
    MONGOTAP=${b#*=} start_mongotap "$name" "$@"
    MONGOTAP_ENV=()
    TARGETS+=("$name $MONGOTAP_ADDR $MONGOTAP_PID")
done

# user and system ticks, minor faults, voluntary and involuntary switches, segments sent
counters() {
    printf '%s ' "$(cpu_ticks "$1")"
    awk '{ sub(/^.*\) /, ""); printf "%s ", $8 }' "/proc/$1/stat"
    awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { printf "%s %s ", v, n }' \
        "/proc/$1/status"
    awk '/^Tcp:/ && n++ { print $12 }' /proc/net/snmp
}

RESULTS=$WORK/results.jsonl
n=${#TARGETS[@]}
for ((round = 0; round < ROUNDS; round++)); do
    for ((k = 0; k < n; k++)); do
        read -r name addr pid <<<"${TARGETS[$(((k + round) % n))]}"
        c0=$(counters "$pid")
        line=$("${PIN_LG[@]}" "$LOADGEN" --target "$addr" --label "$name" --mode "$MODE" \
            --conns "$CONNS" --seconds "$SECONDS_PER_POINT" --warmup "$WARMUP" --json \
            2>>"$WORK/loadgen.log" | tail -n1) || die "loadgen failed on $name: $(tail -n 3 "$WORK/loadgen.log")"
        c1=$(counters "$pid")
        "$PYTHON" - "$line" "$c0" "$c1" "$CLK_TCK" "$round" <<'EOF' >>"$RESULTS"
import json, sys
r = json.loads(sys.argv[1])
if r.get("errors"):
    sys.exit("bench: error: %s: %d failed requests" % (r["target"], r["errors"]))
a, b = ([int(x) for x in s.split()] for s in sys.argv[2:4])
hz, req = int(sys.argv[4]), max(r["all_requests"], 1)  # counters cover the warm-up too
d = [y - x for x, y in zip(a, b)]
r.update(round=int(sys.argv[5]), user_us=d[0] * 1e6 / hz / req, sys_us=d[1] * 1e6 / hz / req,
         faults=d[2] / req, vcs=d[3] / req, ics=d[4] / req, segs=d[5] / req)
print(json.dumps(r))
EOF
        "$PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1])
print("round %d %-14s %9.0f req/s  p99 %8.1f us  user %.2f sys %.2f us/req  vcs %.3f ics %.3f"
      "  faults %.3f  segs %.1f" % (r["round"] + 1, r["target"], r["req_per_s"], r["p99_us"],
      r["user_us"], r["sys_us"], r["vcs"], r["ics"], r["faults"], r["segs"]))' "$(tail -n1 "$RESULTS")"
    done
done

"$PYTHON" - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = list(dict.fromkeys(r["target"] for r in rows))
med = lambda name, k: statistics.median(r[k] for r in rows if r["target"] == name)
h = med("haproxy", "req_per_s")
hcpu = med("haproxy", "user_us") + med("haproxy", "sys_us")
print("median %d rounds: target, req/s (x HAProxy), CPU us/req (x HAProxy); per-round ratios" %
      len({r["round"] for r in rows}))
for name in names:
    rps, cpu = med(name, "req_per_s"), med(name, "user_us") + med(name, "sys_us")
    per = [r["req_per_s"] / next(x["req_per_s"] for x in rows
                                 if x["target"] == "haproxy" and x["round"] == r["round"])
           for r in rows if r["target"] == name]
    print("  %-14s %9.0f (%.3f)  %.2f (%.3f)  %s" % (name, rps, rps / h, cpu, cpu / hcpu,
          " ".join("%.2f" % p for p in per)))
EOF
