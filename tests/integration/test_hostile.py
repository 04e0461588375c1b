"""Hostile traffic must not stall, bloat or take over the proxy: compression bombs beside a
measured bystander, names of megabytes, a flood of idle admin connections, cross-site posts and
DNS rebinding against the admin endpoint, and field names that are user data. Resource figures
(CPU seconds, resident MiB) are asserted with wide margins; latencies are printed, never
asserted."""

import base64
import hashlib
import re
import socket
import struct
import threading
import time

import bson
import pymongo

import helpers
from faults import procinfo, wire
from faults.sink import SinkUpstream

TOKEN = "tok-hostile-4b1d9e"
MIB = 1024 * 1024


def counters(tap):
    return tap.get_json("/api/stats")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bystander(threading.Thread):
    """A well-behaved client on its own connection: pings one after another, each answered
    before the next, keeping every round-trip time until told to stop."""

    def __init__(self, tap):
        super().__init__(daemon=True, name="bystander")
        self.sock = helpers.raw_connect(tap.host, tap.port, timeout=30)
        self.times = []
        self.errors = []
        self.stop_event = threading.Event()
        self.rid = 1000

    def ping(self):
        self.rid += 1
        start = time.perf_counter()
        doc = helpers.raw_ping(self.sock, request_id=self.rid)
        took = time.perf_counter() - start
        if doc.get("ok") != 1.0:
            self.errors.append(doc)
        return took

    def measure(self, n):
        """n round trips now, on the calling thread (the baseline)."""
        return [self.ping() for _ in range(n)]

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.times.append(self.ping())
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))

    def finish(self):
        self.stop_event.set()
        if self.ident is not None:  # started
            self.join(30)
        self.sock.close()


def send_all(tap, data):
    """A hostile client: sends data on its own connection and never reads."""
    s = socket.create_connection((tap.host, tap.port), timeout=60)
    s.sendall(data)
    return s


ROUND_S = 0.2  # one round of pipelined bombs every 200 ms while the bystander is measured


def bomb_run(tap, sink, bombs, label):
    """Sends the bombs pipelined on one connection: first alone, round after round until 20 MB
    went through, to take the proxy's CPU time per MB sent; then one round every ROUND_S beside
    a bystander, to take what they add to its latency. Returns (cpu ms per MB, baseline p99 ms,
    p99 under attack ms)."""
    data = b"".join(bombs)
    by = Bystander(tap)
    by.measure(200)  # warm
    base = by.measure(1000)

    repeat = -(-20_000_000 // len(data))
    cpu0 = procinfo.cpu_seconds(tap.pid)
    got0 = sink.received
    hostile = send_all(tap, data * repeat)
    assert sink.wait_received(got0 + repeat * len(data), 300), "the bombs were not all forwarded"
    cpu_ms_per_mb = (procinfo.cpu_seconds(tap.pid) - cpu0) * 1000 / (repeat * len(data) / 1e6)
    hostile.close()

    # a round at a time, each on a new connection, for as long as the bystander takes its
    # 2,000 round trips (and at least five rounds)
    stop, rounds = threading.Event(), []

    def attack():
        while not stop.is_set():
            start, got = time.monotonic(), sink.received
            s = send_all(tap, data)
            sink.wait_received(got + len(data), 120)
            s.close()
            rounds.append(1)
            stop.wait(max(0.0, ROUND_S - (time.monotonic() - start)))  # pacing, not waiting

    attacker = threading.Thread(target=attack, daemon=True, name="attacker")
    by.start()
    attacker.start()
    assert procinfo.wait_until(lambda: len(by.times) >= 2000 and len(rounds) >= 5 or by.errors,
                               300), (
        "%d round trips, %d rounds of bombs" % (len(by.times), len(rounds)))
    stop.set()
    attacker.join(120)
    by.finish()
    assert not by.errors, by.errors[:3]
    p99_base, p99_attack = percentile(base, 0.99) * 1000, percentile(by.times, 0.99) * 1000
    print("%s: %d x %d bytes (%.2f MB) -> %.1f ms of proxy CPU per MB sent; bystander p99 "
          "%.2f ms alone, %.2f ms beside %d rounds of them (%+.2f ms added, %d round trips)"
          % (label, len(bombs), len(bombs[0]), len(data) / 1e6, cpu_ms_per_mb, p99_base,
             p99_attack, len(rounds), p99_attack - p99_base, len(by.times)))
    return cpu_ms_per_mb, p99_base, p99_attack


# --- compression bombs -------------------------------------------------------------------------

def test_zlib_bombs_cost_the_proxy_little_and_its_bystanders_nothing(mongotap):
    with SinkUpstream() as sink:
        tap = mongotap("--upstream", sink.address, upstream=None)
        before = counters(tap)
        # 100 inserts of 47.7 MB that look like work, in 46.5 KB each, and 100 of bare zeros
        bombs = [wire.insert_bomb(wire.COMPRESSOR_ZLIB, request_id=i) for i in range(100)]
        assert 40_000 < len(bombs[0]) < 50_000, len(bombs[0])
        cpu, _, _ = bomb_run(tap, sink, bombs, "zlib insert bomb (47.7 MB each)")
        zeros = wire.op_compressed(wire.OP_MSG, 48_000_000, wire.COMPRESSOR_ZLIB,
                                   wire.zlib_of_zeros(48_000_000, 9))
        cpu0, got = procinfo.cpu_seconds(tap.pid), sink.received
        hostile = send_all(tap, zeros * 100)
        assert sink.wait_received(got + 100 * len(zeros), 60)
        hostile.close()
        zeros_cpu = procinfo.cpu_seconds(tap.pid) - cpu0
        print("zlib bomb of bare zeros: 100 x %d bytes -> %.0f ms of proxy CPU in all"
              % (len(zeros), zeros_cpu * 1000))
        after = counters(tap)
        # each insert bomb: its command read, the rest counted as not decompressed
        skipped = after["decompress_skipped"] - before["decompress_skipped"]
        assert skipped >= 6 * len(bombs) and skipped % len(bombs) == 0, skipped
        assert after["commands"] - before["commands"] >= skipped  # and the pings
        # bare zeros: an empty body document after 9 bytes, an error
        assert after["parse_errors"] - before["parse_errors"] == 100
        assert cpu < 100, "%.1f ms of CPU per MB of bombs" % cpu
        assert zeros_cpu < 2.0, "100 bare zlib bombs took %.1f s of CPU" % zeros_cpu
        assert tap.running()


def test_zstd_rle_bombs_cost_the_proxy_little_and_its_bystanders_nothing(mongotap):
    with SinkUpstream() as sink:
        tap = mongotap("--upstream", sink.address, upstream=None)
        before = counters(tap)
        bombs = [wire.insert_bomb(wire.COMPRESSOR_ZSTD, request_id=i) for i in range(200)]
        assert len(bombs[0]) < 2000, len(bombs[0])
        cpu, _, _ = bomb_run(tap, sink, bombs, "zstd RLE insert bomb (47.7 MB each)")
        after = counters(tap)
        skipped = after["decompress_skipped"] - before["decompress_skipped"]
        assert skipped >= 6 * len(bombs) and skipped % len(bombs) == 0, skipped
        assert after["parse_errors"] == before["parse_errors"]
        assert cpu < 100, "%.1f ms of CPU per MB of bombs" % cpu
        assert tap.running()


# --- the admin endpoint ------------------------------------------------------------------------

def admin_sockets(tap):
    """Connections the proxy holds on its admin port (accepted, not listening)."""
    return procinfo.fd_count(tap.pid) - procinfo.fds_without_port(tap.pid, tap.admin[1])


def test_healthz_answers_through_a_flood_of_idle_admin_connections(mongotap):
    tap = mongotap()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(tap.admin, timeout=30))
        # the proxy holds its 256 and the probe reserve; the rest it refused or let go
        assert procinfo.wait_until(lambda: admin_sockets(tap) >= 256, 10), admin_sockets(tap)
        statuses = [helpers.admin_request(tap, "GET", "/healthz")[0] for _ in range(40)]
        assert statuses == [200] * 40, statuses
        # a connection past the cap is for health probes only
        status, _, body = helpers.admin_request(tap, "GET", "/api/stats")
        assert status == 503, (status, body[:200])
        print("idle admin connections held: %d of 300 opened; /healthz: %d of 40 answered 200"
              % (admin_sockets(tap), statuses.count(200)))

        # idle connections time out (10 s without a request head), so the cap frees itself
        start = time.monotonic()
        still_open = idle[:256]
        for s in still_open:
            s.settimeout(max(1.0, 30 - (time.monotonic() - start)))
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        print("idle admin connections closed by the proxy after %.1f s"
              % (time.monotonic() - start))
        assert procinfo.wait_until(lambda: admin_sockets(tap) == 0, 10), admin_sockets(tap)
        assert helpers.admin_request(tap, "GET", "/api/stats")[0] == 200
    finally:
        for s in idle:
            s.close()
    assert tap.running()


def test_cross_site_posts_and_foreign_hosts_are_refused(mongotap, dbname):
    tap = mongotap()
    with pymongo.MongoClient(tap.uri(dbname)) as c:
        c[dbname]["x"].insert_one({"_id": 1})
    commands = tap.get_json("/api/stats")["commands"]
    assert commands > 0

    # what a form or a no-CORS fetch on another site can send
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"):
        status, _, body = helpers.admin_request(
            tap, "POST", "/api/reset", {"Content-Type": ctype, "Origin": "http://evil.example"},
            b"x=1")
        assert status == 403, (ctype, status, body)
    assert helpers.admin_request(tap, "POST", "/api/reset", {}, b"")[0] == 403
    assert tap.get_json("/api/stats")["commands"] >= commands, "a refused reset reset"

    # DNS rebinding: a page on attacker.example resolved to 127.0.0.1 sends its own name
    port = tap.admin[1]
    for host in ("attacker.example", "attacker.example:%d" % port, "127.0.0.1.evil.example",
                 "127.evil.example:%d" % port, "localhost.evil.example", "[::2]:%d" % port):
        for path in ("/api/stats", "/metrics", "/", "/events", "/api/report?format=html"):
            status = helpers.admin_request(tap, "GET", path, {"Host": host})[0]
            assert status == 403, (host, path, status)
        assert helpers.admin_request(tap, "GET", "/healthz", {"Host": host})[0] == 200
    for host in ("127.0.0.1:%d" % port, "127.0.0.1", "localhost:%d" % port, "LocalHost",
                 "[::1]:%d" % port, "127.9.9.9:80"):
        assert helpers.admin_request(tap, "GET", "/api/stats", {"Host": host})[0] == 200, host
    # HTTP/1.0 without a Host (no browser sends that)
    with socket.create_connection(tap.admin, timeout=10) as s:
        s.sendall(b"GET /api/stats HTTP/1.0\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 200"), "a request without Host is served"

    # what the console and mongotap's own clients send still works
    assert tap.post("/api/reset")[0] == 200
    assert tap.get_json("/api/stats")["commands"] < commands
    status = helpers.admin_request(tap, "POST", "/api/reset",
                                   {"Content-Type": "application/json; charset=utf-8"}, b"{}")[0]
    assert status == 200


def test_with_a_token_any_host_is_served_and_posts_still_need_the_header(mongotap):
    tap = mongotap("--admin-token", TOKEN)
    auth = {"Authorization": "Bearer " + TOKEN}
    foreign = dict(auth, Host="mongotap.internal:%d" % tap.admin[1])
    assert helpers.admin_request(tap, "GET", "/api/stats", foreign)[0] == 200
    assert helpers.admin_request(tap, "GET", "/api/stats", {"Host": "x.example"})[0] == 401
    assert helpers.admin_request(tap, "POST", "/api/reset", auth, b"")[0] == 403
    assert helpers.admin_request(tap, "POST", "/api/reset", dict(auth, **helpers.POST_HEADERS),
                                 b"")[0] == 200
    assert tap.post("/api/reset", token=TOKEN)[0] == 200


def test_console_page_is_served_with_a_strict_policy(mongotap):
    tap = mongotap()
    status, headers, page = helpers.admin_request(tap, "GET", "/")
    assert status == 200
    headers = {k.lower(): v for k, v in headers.items()}
    csp = headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'", csp
    assert directives["connect-src"] == "'self'", csp
    assert directives["frame-ancestors"] == "'none'", csp
    assert directives["form-action"] == "'none'", csp
    # the page's inline script, by its hash: no other script can run, inline handlers neither
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    assert scripts, "the console has its script inline"
    want = " ".join("'sha256-%s'" % base64.b64encode(hashlib.sha256(s).digest()).decode()
                    for s in scripts)
    assert directives["script-src"] == want, (directives["script-src"], want)
    assert "http" not in csp, "no other origin is allowed"
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    api = {k.lower(): v for k, v in helpers.admin_request(tap, "GET", "/api/stats")[1].items()}
    assert api["x-content-type-options"] == "nosniff"


# --- names of megabytes ------------------------------------------------------------------------

def long_name_find(i, size=4 * MIB):
    """{find: "<n><4 MB of x>", filter: {_id: i}, $db: "hostile"}: each name is distinct in its
    first bytes, so that cutting them keeps them apart."""
    coll = b"c%03d" % i + b"x" * (size - 4)
    body = wire.bson_raw([wire.el_str(b"find", coll),
                          wire.el_doc(b"filter", wire.bson_raw([wire.el_int32(b"_id", i)])),
                          wire.el_str(b"$db", b"hostile")])
    return wire.op_msg(body, request_id=100 + i)


def test_megabyte_names_do_not_stay_in_memory(mongotap):
    finds = [long_name_find(i) for i in range(100)]
    with SinkUpstream() as sink:
        for extra in ([], ["--max-shapes", "1"]):
            tap = mongotap("--upstream", sink.address, *extra, upstream=None,
                           env=helpers.small_quarantine_env())
            by = Bystander(tap)
            by.measure(50)
            rss0 = procinfo.rss_kib(tap.pid)
            s = helpers.raw_connect(tap.host, tap.port, timeout=60)
            reader = wire.MessageReader(s)
            peak = 0
            for m in finds:
                s.sendall(m)
                assert reader.read() is not None, "every find is answered"
                peak = max(peak, procinfo.rss_kib(tap.pid))
            stats = tap.get("/api/stats?limit=1000")[2]
            metrics = tap.get("/metrics")[2]
            doc = tap.get_json("/api/stats?limit=1000")
            assert doc["names_truncated"] == 100
            colls = [x["collection"] for x in doc["shapes"] if x["collection"].startswith("c")]
            assert all(len(c) == 255 - len("hostile.") for c in colls), {len(c) for c in colls}
            assert len(colls) == (100 if not extra else 0), len(colls)
            s.close()
            by.measure(50)  # the proxy is serving; the connection is gone
            assert procinfo.wait_until(lambda: tap.get_json("/api/stats")["connections"]
                                       ["active"] == 1, 10)
            rss_closed = procinfo.rss_kib(tap.pid)
            assert tap.post("/api/reset")[0] == 200
            rss_reset = procinfo.rss_kib(tap.pid)
            by.finish()
            print("100 finds with 4 MB collection names%s: VmRSS %.1f MiB at start, %.1f MiB at "
                  "most, %.1f MiB after the client left, %.1f MiB after /api/reset; /api/stats "
                  "%d bytes, /metrics %d bytes"
                  % (" (--max-shapes 1)" if extra else "", rss0 / 1024, peak / 1024,
                     rss_closed / 1024, rss_reset / 1024, len(stats), len(metrics)))
            assert peak - rss0 < 64 * 1024, "VmRSS grew %d KiB" % (peak - rss0)
            assert rss_closed - rss0 < 16 * 1024, "VmRSS %d -> %d KiB" % (rss0, rss_closed)
            assert rss_reset - rss0 < 16 * 1024, "VmRSS %d -> %d KiB" % (rss0, rss_reset)
            assert len(stats) < 256 * 1024 and len(metrics) < 256 * 1024
            assert tap.stop() == 0


# --- user data used as field names -------------------------------------------------------------

def test_redacted_field_names_appear_in_no_output(mongotap, dbname):
    tap = mongotap("--redact-fields", "@", "--window-gap-ms", "50")
    plain = mongotap(env={"MONGOTAP_WINDOW_GAP_MS": "50"})
    for t in (tap, plain):
        with pymongo.MongoClient(t.uri(dbname)) as c:
            db = c[dbname]
            owners = [db.users.insert_one({"n": i}).inserted_id for i in range(8)]
            db.prefs.insert_many([{"owner@corp": o, "ann@corp": {"theme": "d"}}
                                  for o in owners])
            # a parent find, then one lookup per document keyed by a user-data field name
            for p in db.prefs.find({"ann@corp.theme": "d"}):
                db.users.find_one({"bob@corp": p["owner@corp"]})
        assert procinfo.wait_until(lambda: t.get_json("/api/stats")["windows"]["closed"] > 0, 10)
    outputs = {path: tap.get(path)[2] for path in (
        "/api/stats?limit=1000", "/api/findings", "/api/windows", "/metrics",
        "/api/report?format=json", "/api/report?format=markdown", "/api/report?format=html")}
    for path, body in outputs.items():
        assert b"@corp" not in body, (path, body[:2000])
    shapes = {x["shape"] for x in tap.get_json("/api/stats?limit=1000")["shapes"]}
    assert '{"?": "?"}' in shapes and '{"?.theme": "?"}' not in shapes, shapes
    findings = tap.get_json("/api/findings")["findings"]
    assert findings, "the lookups are still found as an N+1"
    assert findings[0]["children"]["key"] == "?" and findings[0]["field"] == "?", findings[0]
    # without the flag the same traffic shows the names: what the wire cannot protect
    assert b"bob@corp" in plain.get("/api/stats?limit=1000")[2]


# --- unfinished giant messages, many cursors, a reply cut by a hang-up --------------------------

def test_unfinished_giant_messages_hold_no_memory(mongotap):
    """Ten clients each send 46 MB of a 47 MB insert and stop there: the proxy forwards what
    comes, keeps only the command document for accounting, and gives the rest back. Three more
    send the front of a 16 MB command document: reassembly stops at its budget and says so."""
    insert_body = bson.BSON.encode({"insert": "big", "$db": "hostile"})
    doc = bson.BSON.encode({"_id": 1, "pad": b"\xab" * (1000 * 1000 - 64)})
    n_docs = 47
    seq = b"\x01" + struct.pack("<i", 4 + len(b"documents\x00") + n_docs * len(doc)) + \
        b"documents\x00"
    total = 16 + 4 + 1 + len(insert_body) + len(seq) + n_docs * len(doc)
    front = wire.header(total, request_id=5) + struct.pack("<I", 0) + b"\x00" + insert_body + seq
    with SinkUpstream() as sink:
        tap = mongotap("--upstream", sink.address, upstream=None,
                       env=helpers.small_quarantine_env())
        by = Bystander(tap)
        by.measure(20)
        rss0 = procinfo.rss_kib(tap.pid)
        hogs = []
        for _ in range(10):
            s = helpers.raw_connect(tap.host, tap.port, timeout=60)
            s.sendall(front)
            for _ in range(n_docs - 1):
                s.sendall(doc)
            hogs.append(s)
        assert sink.wait_received(10 * (len(front) + (n_docs - 1) * len(doc)), 120), \
            "every byte sent was forwarded"
        peak = procinfo.rss_kib(tap.pid)
        # fronts of 16 MB command documents: each is kept until the budget is reached
        big_body_len = 16 * 1024 * 1024
        big_front = wire.header(16 + 4 + 1 + big_body_len, request_id=9) + \
            struct.pack("<I", 0) + b"\x00" + struct.pack("<i", big_body_len) + b"\x02pad\x00"
        for _ in range(3):
            s = helpers.raw_connect(tap.host, tap.port, timeout=60)
            s.sendall(big_front + b"\xcd" * (15 * 1024 * 1024))
            hogs.append(s)
        assert procinfo.wait_until(lambda: counters(tap)["accounting_shed"] >= 1, 60), \
            counters(tap)
        peak = max(peak, procinfo.rss_kib(tap.pid))
        by.measure(20)
        for s in hogs:
            s.close()
        assert procinfo.wait_until(lambda: counters(tap)["connections"]["active"] == 1, 30)
        rss_after = procinfo.rss_kib(tap.pid)
        by.finish()
        print("10 x 46 MB of a 47 MB insert + 3 x 15 MB of a 16 MB command document: VmRSS "
              "%.1f MiB at start, %.1f MiB at most, %.1f MiB after the clients left"
              % (rss0 / 1024, peak / 1024, rss_after / 1024))
        assert peak - rss0 < 64 * 1024, "VmRSS grew %d KiB" % (peak - rss0)
        assert rss_after - rss0 < 16 * 1024, "VmRSS %d -> %d KiB" % (rss0, rss_after)
        assert not by.errors, by.errors
        assert tap.stop() == 0


class CursorUpstream:
    """Answers every find with a cursor of its own (ids counting up), every ping with ok."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.next_id = 1000
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        reader = wire.MessageReader(conn)
        out = bytearray()
        with conn:
            while True:
                m = reader.read()
                if m is None:
                    return
                (_, rid, _, _), body = m
                doc = bson.BSON(body[5:]).decode()
                if "find" in doc:
                    with self.lock:
                        self.next_id += 1
                        cid = self.next_id
                    reply = {"cursor": {"id": bson.int64.Int64(cid), "ns": "h.c",
                                        "firstBatch": []}, "ok": 1.0}
                else:
                    reply = {"ok": 1.0}
                out += wire.message(wire.OP_MSG, struct.pack("<I", 0) + b"\x00" +
                                    bson.BSON.encode(reply), request_id=rid + 1, response_to=rid)
                if len(out) > 65536 or len(reader.buf) < 16:
                    conn.sendall(out)
                    out.clear()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.sock.close()


def pipelined_finds(tap, n, batch=1000):
    """n finds on one connection, batch at a time, every reply read."""
    s = helpers.raw_connect(tap.host, tap.port, timeout=60)
    reader = wire.MessageReader(s)
    sent = 0
    while sent < n:
        k = min(batch, n - sent)
        s.sendall(b"".join(wire.op_msg({"find": "c", "filter": {"_id": sent + i}, "$db": "h"},
                                       request_id=sent + i + 1) for i in range(k)))
        for _ in range(k):
            assert reader.read() is not None
        sent += k
    return s


def test_many_open_cursors_stay_cheap_and_go_with_their_connection(mongotap):
    """100,000 finds each leave a cursor open. The table keeps the newest 65,536 and evicts the
    oldest in O(1) (a scan of 131,072 slots per find cost 0.39 ms of CPU each before); the
    cursors of a connection that closes are forgotten."""
    up = CursorUpstream()
    try:
        tap = mongotap("--upstream", up.address, upstream=None,
                       env=helpers.small_quarantine_env())
        by = Bystander(tap)
        base = by.measure(50)
        cpu0 = procinfo.cpu_seconds(tap.pid)
        rss0 = procinfo.rss_kib(tap.pid)
        s = pipelined_finds(tap, 65536)
        cpu_fill = procinfo.cpu_seconds(tap.pid) - cpu0
        assert counters(tap)["cursors_open"] == 65536
        cpu1 = procinfo.cpu_seconds(tap.pid)
        by.start()
        s2 = pipelined_finds(tap, 34464)
        by.finish()
        cpu_evict = procinfo.cpu_seconds(tap.pid) - cpu1
        doc = counters(tap)
        assert doc["cursors_open"] == 65536 and doc["cursors_evicted"] == 34464, doc
        rss = procinfo.rss_kib(tap.pid)
        s.close()
        s2.close()
        assert procinfo.wait_until(lambda: counters(tap)["cursors_open"] == 0, 10), counters(tap)
        print("100,000 open cursors: %.2f s of proxy CPU for the first 65,536 finds, %.2f s for "
              "the 34,464 that each evicted one (%.1f us each); VmRSS +%.1f MiB; bystander ping "
              "p50 %.2f ms before, %.2f ms while evicting"
              % (cpu_fill, cpu_evict, cpu_evict / 34464 * 1e6, (rss - rss0) / 1024,
                 percentile(base, 0.5) * 1e3, percentile(by.times or [0], 0.5) * 1e3))
        # eviction costs about what an insert does, not a scan of the table
        assert cpu_evict / 34464 < 3 * max(cpu_fill / 65536, 20e-6), (cpu_fill, cpu_evict)
        assert rss - rss0 < 64 * 1024
        assert not by.errors, by.errors
        assert tap.stop() == 0
    finally:
        up.close()


def test_a_long_reply_then_a_hang_up_reaches_a_slow_client_whole(mongotap):
    """The upstream answers with a 16,000,046-byte reply and closes at once; the client reads
    slowly. Every byte must arrive before the proxy closes the client."""
    reply_len = 16000046
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve():
        while True:
            conn, _ = listener.accept()
            (_, _, _, _), first = wire.MessageReader(conn).read()
            if helpers.MONITOR_MARK not in first:
                break
            conn.close()  # mongotap's upstream monitor: not the client's connection
        with conn:
            doc_len = reply_len - 21  # header, flags, section kind
            pad = doc_len - 13  # length, type, "p", string length, NULs
            body = struct.pack("<i", doc_len) + b"\x02p\x00" + struct.pack("<i", pad + 1) + \
                b"x" * pad + b"\x00" + b"\x00"
            conn.sendall(wire.header(reply_len, request_id=2, response_to=1) +
                         struct.pack("<I", 0) + b"\x00" + body)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        tap = mongotap("--upstream", "127.0.0.1:%d" % listener.getsockname()[1], upstream=None)
        s = helpers.raw_connect(tap.host, tap.port, timeout=60)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(wire.op_msg({"find": "big", "$db": "h"}, request_id=1))
        t.join(30)  # the upstream has sent everything and hung up
        got = 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
            time.sleep(0.001)  # a slow reader
        s.close()
        assert got == reply_len, "client got %d of %d bytes" % (got, reply_len)
        assert tap.stop() == 0
    finally:
        listener.close()


def test_a_valid_message_before_an_impossible_header_is_forwarded(mongotap):
    """One segment holding a ping and then an impossible header: the ping reaches the upstream,
    no byte of the bad message does, and the connection closes right after it."""
    with SinkUpstream() as sink:
        tap = mongotap("--upstream", sink.address, upstream=None)
        s = helpers.raw_connect(tap.host, tap.port, timeout=10)
        ping = wire.op_msg({"ping": 1, "$db": "admin"}, request_id=3)
        s.sendall(ping + wire.header(8, request_id=4))
        assert wire.MessageReader(s).read() is None, "the connection closed"
        assert sink.wait_received(len(ping), 10), "the ping was forwarded"
        assert sink.received == len(ping), "no byte of the bad header left"
        doc = counters(tap)
        assert doc["protocol_errors"] == 1 and doc["commands"] >= 1, doc
        assert tap.stop() == 0
