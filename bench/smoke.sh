#!/usr/bin/env bash
# smoke.sh: a short end-to-end check of the benchmark (about 30 s). Builds nothing: it expects the
# build tree (MT_BUILD_DIR, default build/) to hold bench/mt-loadgen, bench/mt-stub-upstream,
# bench/mt-alloc-count.so and proxy/mongotap, runs `bench/run.sh --quick`, and fails if any target
# answered no request or any error was seen, or if a CPU, allocation or memory measurement is
# missing; then one short round of `bench/ab.sh`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/mt-bench-smoke.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

if ! timeout 180 "$ROOT/bench/run.sh" --quick --out "$OUT" >"$OUT/stdout.txt" 2>"$OUT/stderr.txt"; then
    cat "$OUT/stderr.txt" >&2
    echo "bench smoke: FAIL: run.sh --quick failed" >&2
    exit 1
fi

if ! "$PYTHON" - "$OUT/results.jsonl" "${MT_BENCH_SKIP_MONGOTAP:-0}" <<'PYEOF'; then
import json
import sys

path, skip_mongotap = sys.argv[1], sys.argv[2] == "1"
problems = []
points, meta = [], {}
for line in open(path):
    r = json.loads(line)
    if "kind" in r:
        meta.setdefault(r["kind"], []).append(r)
    else:
        points.append(r)

targets = {"direct", "haproxy"} | (set() if skip_mongotap else {"mongotap", "mongotap-windows"})
seen = {r["target"] for r in points}
if seen != targets:
    problems.append(f"targets measured: {sorted(seen)}, expected {sorted(targets)}")
for r in points:
    name = f"{r['mode']} c={r['conns']} {r['target']}"
    if r.get("requests", 0) <= 0:
        problems.append(f"{name}: no request completed")
    if r.get("errors", 0) != 0:
        problems.append(f"{name}: {r['errors']} errors")
    if r.get("cpu_us_per_req") is None and not r.get("failed"):
        problems.append(f"{name}: no CPU time per request")

idle = {r["target"]: r for r in meta.get("idle_rss", [])}
for t in targets & {"haproxy", "mongotap"}:
    if t not in idle:
        problems.append(f"idle memory test missing for {t}")
    elif idle[t]["conns"] != idle[t]["asked"]:
        problems.append(f"idle test on {t}: {idle[t]['conns']} of {idle[t]['asked']} connections")
if not skip_mongotap:
    series = {r["series"]: r for r in meta.get("shapes_rss", [])}
    for name in ("distinct", "control"):
        r = series.get(name)
        if r is None:
            problems.append(f"shapes memory test missing: {name}")
        elif r["errors"] != 0 or r["sent"] != r["points"][-1]["commands"]:
            problems.append(f"shapes test ({name}): {r['sent']} sent, {r['errors']} errors")
    allocs = {r["series"]: r for r in meta.get("allocs", [])}
    for name in ("find1", "insert1k", "find1-windows"):
        r = allocs.get(name)
        if r is None:
            problems.append(f"allocation count missing: {name}")
        elif min(r["allocs_n"], r["allocs_2n"], r["frees_n"], r["frees_2n"]) < 0:
            problems.append(f"allocation count {name}: counts went backwards: {r}")

if problems:
    for p in problems:
        print("bench smoke: " + p, file=sys.stderr)
    sys.exit(1)
print(f"bench smoke: {len(points)} points over {len(targets)} targets, no errors")
PYEOF
    cat "$OUT/stdout.txt" >&2
    echo "bench smoke: FAIL" >&2
    exit 1
fi
if [ "${MT_BENCH_SKIP_MONGOTAP:-0}" != 1 ]; then
    # ab.sh: one short round; it fails on any failed request, and must print both medians
    if ! timeout 60 "$ROOT/bench/ab.sh" --rounds 1 --seconds 1 --conns 4 >"$OUT/ab.txt" 2>&1 ||
        ! grep -qE '^  haproxy +[1-9]' "$OUT/ab.txt" || ! grep -qE '^  mongotap +[1-9]' "$OUT/ab.txt"; then
        cat "$OUT/ab.txt" >&2
        echo "bench smoke: FAIL: ab.sh" >&2
        exit 1
    fi
fi
echo "bench smoke: OK"
