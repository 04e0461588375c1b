#!/usr/bin/env python3
"""summarize.py: turns the JSON lines of bench/run.sh (results.jsonl) into markdown tables:
medians over rounds per mode, connection count and target, the ratios of each mongotap target
(mongotap, mongotap-windows) to HAProxy, CPU time per request, allocations per request, the
memory figures, and each performance goal marked PASS or MISS."""

import json
import statistics
import sys
from collections import defaultdict

TARGETS = ["direct", "haproxy", "mongotap", "mongotap-windows"]
# tls: find1 with TLS on both sides of the proxy (direct: the TLS stub itself)
MODE_ORDER = ["find1", "find100", "insert1k", "big4m", "driver", "tls"]
# The added-p99 goal is judged on the small-message modes; in big4m the p99 is mostly the
# time to copy 4 MiB twice and is reported for information.
P99_GOAL_MODES = ["find1", "find100", "insert1k"]
P99_SLACK_US = 5.0  # added p99 within this of HAProxy's counts as equal (timer and scheduler noise)
CPU_GOAL_MODES = ["find1"]
ALLOC_GOAL = 0.01  # allocations per request, amortised: "none per message"


def load(path):
    points = defaultdict(list)  # (mode, conns, target) -> [result]
    meta = defaultdict(list)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if "kind" in r:
                meta[r["kind"]].append(r)
            else:
                points[(r["mode"], r["conns"], r["target"])].append(r)
    return points, meta


def med(rs, key):
    vals = [r.get(key, 0) for r in rs]
    return statistics.median(vals) if vals else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_goal(v, want):
    """A ratio judged against want: two decimals, three where two would read as the other verdict
    (0.998 is a miss of >= 1.0, not "1.00x")."""
    if v is None:
        return "-"
    digits = 2 if (round(v, 2) >= want) == (v >= want) else 3
    return f"{fmt(v, digits)}x"


def short(t):
    return "mt-win" if t == "mongotap-windows" else t


def main():
    points, meta = load(sys.argv[1])
    run = meta["run"][0] if meta["run"] else {}
    modes = [m for m in MODE_ORDER if any(k[0] == m for k in points)]
    conns_of = lambda m: sorted({k[1] for k in points if k[0] == m})
    have = lambda t: any(k[2] == t for k in points)
    targets = [t for t in TARGETS if have(t)]
    taps = [t for t in targets if t.startswith("mongotap")]
    proxies = [t for t in targets if t != "direct"]
    goals = []  # (goal, point, value, PASS/MISS)

    out = []
    out.append(
        f"Medians of {run.get('rounds', '?')} round(s) of {run.get('seconds', '?')} s per point "
        f"(after {run.get('warmup', '?')} s of warm-up); build {run.get('build_type') or '?'}, "
        f"{run.get('cpus', '?')} CPUs, pinned: {'yes' if run.get('pinned') else 'no'}, "
        f"HAProxy {run.get('haproxy', '?')}" +
        (f"; {meta['cpu'][0]['steal_pct']}% of CPU time stolen by the hypervisor during the run"
         if meta["cpu"] else "") +
        (f"; load average {run['loadavg_start']} at the start, {meta['cpu'][0]['loadavg_end']} at the end."
         if meta["cpu"] and "loadavg_start" in run else "."))
    out.append("")
    if "mongotap-windows" in targets:
        out.append("`mongotap-windows` (`mt-win` in the ratios) is mongotap with `--window-gap-ms 1 "
                   "--window-max-ms 10`: a connection's window closes every 10 ms and is analysed "
                   "by every detector (n_plus_one, write_loop, repeated_read).")
        out.append("")
    ratio_hdr = " | ".join(f"{short(t)} / haproxy" for t in taps)

    # throughput
    out.append("### Throughput (requests/s)")
    out.append("")
    out.append("| mode | conns | " + " | ".join(targets) + (" | " + ratio_hdr if taps else "") + " |")
    out.append("|---|---:|" + "---:|" * (len(targets) + len(taps)))
    for m in modes:
        for c in conns_of(m):
            rps = {t: med(points.get((m, c, t), []), "req_per_s") for t in targets}
            rts = {t: ratio(rps.get(t), rps.get("haproxy")) for t in taps}
            out.append(f"| {m} | {c} | " + " | ".join(fmt(rps[t]) for t in targets) +
                       "".join(f" | {fmt(rts[t], 2)}" for t in taps) + " |")
            if m in ("find1", "find100"):
                for t in taps:
                    goals.append((f"{short(t)}: throughput >= 1.0x haproxy", f"{m} c={c}",
                                  fmt_goal(rts[t], 1.0), rts[t] is not None and rts[t] >= 1.0))
            if m == "tls" and "mongotap" in targets:
                rt = rts["mongotap"]
                goals.append(("TLS throughput >= 0.9x haproxy (ssl both sides)", f"{m} c={c}",
                              fmt_goal(rt, 0.9), rt is not None and rt >= 0.9))
    out.append("")

    # CPU per request
    if any(r.get("cpu_us_per_req") is not None for rs in points.values() for r in rs):
        out.append("### CPU time per request (microseconds, user + system, /proc of each proxy; "
                   "direct: the stub's)")
        out.append("")
        out.append("| mode | conns | " + " | ".join(targets) + (" | " + ratio_hdr if taps else "") +
                   " |")
        out.append("|---|---:|" + "---:|" * (len(targets) + len(taps)))
        for m in modes:
            for c in conns_of(m):
                cpu = {t: med([r for r in points.get((m, c, t), []) if r.get("cpu_us_per_req")],
                              "cpu_us_per_req") for t in targets}
                rts = {t: ratio(cpu.get(t), cpu.get("haproxy")) for t in taps}
                out.append(f"| {m} | {c} | " + " | ".join(fmt(cpu[t], 1) for t in targets) +
                           "".join(f" | {fmt(rts[t], 2)}" for t in taps) + " |")
                if m in CPU_GOAL_MODES:
                    for t in taps:
                        goals.append((f"{short(t)}: CPU per request <= 1.0x haproxy's", f"{m} c={c}",
                                      f"{fmt(cpu[t], 1)} vs {fmt(cpu.get('haproxy'), 1)} us",
                                      rts[t] is not None and rts[t] <= 1.0))
        out.append("")

    # latency
    out.append("### Latency (microseconds; added = p99 minus direct's p99)")
    out.append("")
    hdr = "| mode | conns | " + " | ".join(f"p50 {short(t)}" for t in targets) + " | " + \
          " | ".join(f"p99 {short(t)}" for t in targets)
    hdr += " | " + " | ".join(f"added p99 {short(t)}" for t in proxies)
    with_ratio = "haproxy" in proxies and taps
    if with_ratio:
        hdr += " | " + " | ".join(f"added ratio {short(t)}" for t in taps)
    out.append(hdr + " |")
    ncols = 2 + 2 * len(targets) + len(proxies) + (len(taps) if with_ratio else 0)
    out.append("|---|" + "---:|" * (ncols - 1))
    for m in modes:
        for c in conns_of(m):
            p50 = {t: med(points.get((m, c, t), []), "p50_us") for t in targets}
            p99 = {t: med(points.get((m, c, t), []), "p99_us") for t in targets}
            added = {t: (p99[t] - p99["direct"]) if p99.get(t) is not None and p99.get("direct") is not None
                     else None for t in proxies}
            row = f"| {m} | {c} | " + " | ".join(fmt(p50[t], 1) for t in targets) + " | " + \
                  " | ".join(fmt(p99[t], 1) for t in targets) + " | " + \
                  " | ".join(fmt(added[t], 1) for t in proxies)
            if with_ratio:
                a_h = added["haproxy"]
                for t in taps:
                    a_m = added[t]
                    ar = ratio(a_m, a_h) if a_h is not None and a_h > 0 else None
                    row += f" | {fmt(ar, 2)}"
                    if m in P99_GOAL_MODES and a_m is not None and a_h is not None:
                        # a negative added p99 is noise: the proxy added nothing measurable
                        a_h0 = max(a_h, 0.0)
                        ok = a_m <= 1.2 * a_h0 or a_m - a_h0 <= P99_SLACK_US
                        goals.append((f"{short(t)}: added p99 <= 1.2x haproxy's", f"{m} c={c}",
                                      f"{a_m:.1f} vs {a_h:.1f} us", ok))
            out.append(row + " |")
    out.append("")

    # big documents
    if "big4m" in modes:
        out.append("### 4 MiB documents (MB/s, both directions: insert 4 MiB, then find 4 MiB back)")
        out.append("")
        out.append("| conns | " + " | ".join(targets) + (" | " + ratio_hdr if taps else "") + " |")
        out.append("|---:|" + "---:|" * (len(targets) + len(taps)))
        for c in conns_of("big4m"):
            bps = {t: med(points.get(("big4m", c, t), []), "bytes_per_s") for t in targets}
            rts = {t: ratio(bps.get(t), bps.get("haproxy")) for t in taps}
            out.append(f"| {c} | " + " | ".join(fmt(bps[t] / 1e6 if bps[t] else None) for t in targets) +
                       "".join(f" | {fmt(rts[t], 2)}" for t in taps) + " |")
            for t in taps:
                # many connections: the goal; one connection (a copy of 4 MiB each way at a
                # time, nothing to overlap): for information, as before
                want = 1.2 if c > 1 else 0.9
                goals.append((f"{short(t)}: 4 MiB bytes/s >= {want}x haproxy", f"c={c}",
                              fmt_goal(rts[t], want), rts[t] is not None and rts[t] >= want))
        out.append("")

    # allocations
    if meta["allocs"]:
        out.append("### Allocations per request (mongotap under bench/mt-alloc-count.so, 16 connections)")
        out.append("")
        out.append("A run of N requests and a run of 2N, each counted once its connections are "
                   "closed: the difference over N is what a request costs, connection set-up and "
                   "teardown cancelled out. malloc, calloc, realloc and aligned allocations are "
                   "counted together.")
        out.append("")
        out.append("| series | mongotap flags | N | allocations (N) | frees (N) | allocations (2N) | "
                   "frees (2N) | allocations per request | frees per request |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in meta["allocs"]:
            n = r["requests"]
            per_a = (r["allocs_2n"] - r["allocs_n"]) / n
            per_f = (r["frees_2n"] - r["frees_n"]) / n
            out.append(f"| {r['series']} | {r['args'] or '(defaults)'} | {n:,} | {r['allocs_n']:,} | "
                       f"{r['frees_n']:,} | {r['allocs_2n']:,} | {r['frees_2n']:,} | {per_a:.4f} | "
                       f"{per_f:.4f} |")
            goals.append(("no allocation per request", r["series"],
                          f"{per_a:.4f} allocations, {per_f:.4f} frees",
                          per_a <= ALLOC_GOAL and per_f <= ALLOC_GOAL))
        out.append("")

    # memory
    if meta["idle_rss"]:
        out.append("### Memory with idle connections (each said hello once, then stays open)")
        out.append("")
        out.append("| target | connections | RSS before (KiB) | RSS after (KiB) | KiB per connection |")
        out.append("|---|---:|---:|---:|---:|")
        for r in meta["idle_rss"]:
            note = f" ({r['note']})" if r.get("note") else ""
            out.append(f"| {r['target']} | {r['conns']:,}{note} | {r['rss_before_kib']:,} | "
                       f"{r['rss_after_kib']:,} | {r['kib_per_conn']:.2f} |")
            if r["target"] == "mongotap":
                goals.append(("<= 32 KiB RSS per idle connection", f"{r['conns']:,} conns",
                              f"{r['kib_per_conn']:.2f} KiB", r["kib_per_conn"] <= 32))
        out.append("")
    series = {r["series"]: r for r in meta["shapes_rss"]}
    if "distinct" in series:
        d, c = series["distinct"], series.get("control")
        out.append("### Memory under distinct query shapes (mongotap, default --max-shapes)")
        out.append("")
        out.append("Each series runs on a fresh mongotap; RSS is read once the load generator's "
                   "connections are closed. The control sends the same number of finds, all of "
                   "one shape: the growth both share is what windows, histograms and the "
                   "allocator cost per command, not per shape.")
        out.append("")
        out.append("| finds sent | RSS, distinct shapes (KiB) | RSS, one shape (KiB) | shapes tracked | windows closed |")
        out.append("|---:|---:|---:|---:|---:|")
        for i, p in enumerate(d["points"]):
            cp = c["points"][i] if c and i < len(c["points"]) else {}
            out.append(f"| {p['commands']:,} | {p['rss_kib']:,} | {fmt(cp.get('rss_kib'))} | "
                       f"{fmt(p.get('shapes_tracked'))} | {fmt(p.get('windows_closed'))} |")
        out.append("")
        (p1, p2) = d["points"][-2], d["points"][-1]
        growth = p2["rss_kib"] - p1["rss_kib"]
        base = growth
        if c and len(c["points"]) == len(d["points"]):
            base = growth - (c["points"][-1]["rss_kib"] - c["points"][-2]["rss_kib"])
        errs = d.get("errors", 0) + (c.get("errors", 0) if c else 0)
        flat = base <= max(1024, 0.05 * p1["rss_kib"]) and errs == 0
        goals.append(("RSS flat under distinct shapes", f"{p1['commands']:,} -> {p2['commands']:,}",
                      f"{growth:+,} KiB ({base:+,} KiB beyond the one-shape control), {errs} errors",
                      flat))

    errors = sum(r.get("errors", 0) for rs in points.values() for r in rs)
    zero = [f"{k[0]} c={k[1]} {k[2]}" for k, rs in points.items() if any(r.get("requests", 0) == 0 for r in rs)]
    out.append(f"Load generator errors over all points: {errors}." +
               (f" Points with no request: {', '.join(sorted(zero))}." if zero else ""))
    out.append("")

    if goals:
        out.append("### Goals")
        out.append("")
        out.append("| goal | point | value | result |")
        out.append("|---|---|---|---|")
        for g, p, v, ok in goals:
            out.append(f"| {g} | {p} | {v} | {'PASS' if ok else 'MISS'} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
