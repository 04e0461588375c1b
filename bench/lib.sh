# shellcheck shell=bash disable=SC2034
# lib.sh: what the benchmark scripts share (sourced by run.sh, ab.sh and profile.sh, after they
# set BUILD or STUB and MONGOTAP): pinning, the work directory and its cleanup, readiness lines,
# a process's CPU time, and starting the stub, mongotap and HAProxy. The variables it sets
# (SC2034) are read by those scripts.

STUB=${STUB:-$BUILD/bench/mt-stub-upstream}
MONGOTAP=${MONGOTAP:-$BUILD/proxy/mongotap}

die() { echo "bench: error: $*" >&2; exit 1; }

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

# bench_workdir PREFIX: sets WORK, a fresh directory removed on exit (copied to $OUT first when
# OUT is set), and PIDS, the processes killed then.
bench_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        cp -r "$WORK"/. "$OUT"/ 2>/dev/null || true
    fi
    rm -rf "$WORK"
}

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

# start_stub [NAME [ARGS...]]: sets STUB_PID and STUB_PORT.
start_stub() {
    local name=${1:-stub}
    shift || true
    "${PIN_SRV[@]}" "$STUB" --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    STUB_PID=$!
    PIDS+=("$STUB_PID")
    wait_for_line "$WORK/$name.out" '^ready port=' "$STUB_PID" 10 || die "stub did not start: $(cat "$WORK/$name.log")"
    STUB_PORT=$(sed -n 's/^ready port=//p' "$WORK/$name.out")
}

# start_mongotap NAME [ARGS...]: sets MONGOTAP_PID, MONGOTAP_ADDR and MONGOTAP_ADMIN. The
# environment assignments in MONGOTAP_ENV (if any) are made for mongotap alone. mongotap runs in
# a session of its own, as HAProxy does once it daemonizes (-D): with the kernel's autogroups
# (sched_autogroup_enabled) a session is a scheduling group, and in the stub's group, on the
# stub's CPU, every request it forwards wakes the stub to preempt it (twice the context switches
# of HAProxy's setup, measured with /proc/PID/status).
MONGOTAP_ENV=()
start_mongotap() {
    local name=$1 line
    shift
    "${PIN_SRV[@]}" setsid env "${MONGOTAP_ENV[@]}" "$MONGOTAP" --listen 127.0.0.1:0 \
        --upstream "127.0.0.1:$STUB_PORT" --admin 127.0.0.1:0 "$@" 2>"$WORK/$name.log" &
    MONGOTAP_PID=$!
    PIDS+=("$MONGOTAP_PID")
    wait_for_line "$WORK/$name.log" 'ready listen=' "$MONGOTAP_PID" 15 ||
        die "mongotap did not start: $(tail -n 5 "$WORK/$name.log")"
    line=$(grep -m1 'ready listen=' "$WORK/$name.log")
    MONGOTAP_ADDR=$(sed -E 's/.*ready listen=([^ ,]+).*/\1/' <<<"$line")
    MONGOTAP_ADMIN=$(sed -E 's/.*admin=([^ ]+).*/\1/' <<<"$line")
    MONGOTAP_TLS_ADDR=$(sed -nE 's/.* tls_listen=([^ ,]+).*/\1/p' <<<"$line")
}

# CPU time a process has used, user and system, in clock ticks
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

PYTHON=${PYTHON:-python3}
free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_haproxy NAME MAXCONN [tls]: sets HAPROXY_PID and HAPROXY_ADDR. In daemon mode (-D) haproxy
# returns only once its listener is bound, which is the readiness signal. With tls it terminates
# TLS on its bind and speaks TLS to the TLS stub, verifying it as mongotap does.
start_haproxy() {
    local name=$1 maxconn=$2 port bind_opts="" server="127.0.0.1:$STUB_PORT"
    if [ "${3:-}" = tls ]; then
        bind_opts=" ssl crt $CERTS/server-combined.pem"
        server="127.0.0.1:$TLS_STUB_PORT ssl verify required ca-file $CERTS/ca.pem sni str(localhost) verifyhost localhost"
    fi
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
    bind 127.0.0.1:$port$bind_opts
    default_backend stub
backend stub
    server stub $server maxconn $maxconn
EOF
    "${PIN_SRV[@]}" haproxy -D -p "$WORK/$name.pid" -f "$WORK/$name.cfg" >"$WORK/$name.log" 2>&1 ||
        die "haproxy did not start: $(cat "$WORK/$name.log")"
    HAPROXY_PID=$(head -n1 "$WORK/$name.pid")
    PIDS+=("$HAPROXY_PID")
    HAPROXY_ADDR=127.0.0.1:$port
}
