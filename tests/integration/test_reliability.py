"""Reliability: mongotap under faults on either side. The upstream dies, stalls or refuses; clients
reset mid-message, dribble bytes, or connect and leave a thousand times; the proxy runs out of
connections or file descriptors; SIGTERM arrives mid-workload. Each test checks what the clients
see, that the proxy stays up and healthy, and that it holds nothing (fds, memory, sessions) once
the faulty peer is gone."""

import json
import os
import resource
import signal
import socket
import threading
import time

import pymongo
import pytest
from bson.binary import Binary
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

import helpers
from faults import procinfo, wire
from faults.relay import RecordingRelay
from faults.stalled import StalledUpstream


def client_for(uri, **kwargs):
    kwargs.setdefault("serverSelectionTimeoutMS", 10000)
    return pymongo.MongoClient(uri, **kwargs)


def active_connections(tap):
    return tap.get_json("/api/stats")["connections"]["active"]


def wait_idle(tap, timeout=5):
    """Polls until the proxy reports no live client connection; fails after timeout."""
    ok = procinfo.wait_until(lambda: active_connections(tap) == 0, timeout)
    assert ok, "still %d active connections after %ss" % (active_connections(tap), timeout)


def proxy_fds(tap):
    """The proxy's open fds, not counting admin HTTP connections (the test's own polling)."""
    return procinfo.fds_without_port(tap.pid, tap.admin[1])


def wait_fds(tap, expected, timeout=5):
    """Polls until the proxy holds exactly `expected` fds; fails listing what it holds."""
    if procinfo.wait_until(lambda: proxy_fds(tap) == expected, timeout):
        return
    raise AssertionError("%d fds, expected %d after %ss: %r"
                         % (proxy_fds(tap), expected, timeout,
                            sorted(procinfo.fd_targets(tap.pid).items())))


class Workload(threading.Thread):
    """A PyMongo client looping insert + find_one + a small find, verifying each result and
    counting successes and failures; failures are expected while an upstream is down."""

    def __init__(self, uri, dbname, tag, **client_kwargs):
        super().__init__(daemon=True, name="workload-%s" % tag)
        self.uri, self.dbname, self.tag = uri, dbname, tag
        self.client_kwargs = client_kwargs
        self.ok = 0
        self.failures = 0
        self.wrong = []
        self.stop_event = threading.Event()
        self.cond = threading.Condition()

    def run(self):
        # no driver retries: a read retried on a restarted (empty) server would look like loss
        with client_for(self.uri, maxPoolSize=1, retryReads=False, retryWrites=False,
                        **self.client_kwargs) as c:
            col = c[self.dbname]["work_%s" % self.tag]
            i = 0
            while not self.stop_event.is_set():
                i += 1
                try:
                    col.insert_one({"_id": i, "v": "x" * (i % 300)})
                    got = col.find_one({"_id": i})
                    if got != {"_id": i, "v": "x" * (i % 300)}:
                        self.wrong.append((i, got))
                    list(col.find({"_id": {"$lte": 3}}).limit(3))
                    with self.cond:
                        self.ok += 1
                        self.cond.notify_all()
                except PyMongoError:
                    with self.cond:
                        self.failures += 1
                        self.cond.notify_all()
                    self.stop_event.wait(0.05)  # pace retries while the server is away

    def wait_ok(self, n, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.ok >= n, timeout)

    def stop(self):
        self.stop_event.set()
        self.join(30)
        assert not self.is_alive(), "workload %s did not stop" % self.tag


# --- upstream faults -----------------------------------------------------------------------------

def test_upstream_sigkill_closes_every_client_and_recovers(mongotap, jongodb_factory, dbname):
    upstream = jongodb_factory()
    port = upstream.port
    tap = mongotap(upstream=upstream.address)
    workers = [Workload(tap.uri(dbname), dbname, "k%d" % k, serverSelectionTimeoutMS=3000)
               for k in range(4)]
    for w in workers:
        w.start()
    raws = []
    try:
        for w in workers:
            assert w.wait_ok(10, 30), "workload %s did not get going" % w.tag
        for i in range(16):
            s = helpers.raw_connect(tap.host, tap.port)
            assert helpers.raw_ping(s, request_id=100 + i)["ok"] == 1.0
            raws.append(s)
        mark = len(tap.log_lines())

        killed_at = time.monotonic()
        upstream.proc.send_signal(signal.SIGKILL)
        for s in raws:
            left = 1.0 - (time.monotonic() - killed_at)
            # socket.timeout here is the failure: the client was not closed within 1 s
            _, data = helpers.wait_closed(s, max(left, 0.01))
            assert data == b"", "mongotap sent bytes of its own: %r" % data[:64]
        closed_within = time.monotonic() - killed_at
        assert closed_within < 1.0
        upstream.proc.wait(10)

        assert tap.running()
        assert tap.get("/healthz")[0] == 200
        assert tap.wait_for_log(r"upstream closed the connection", 5, start=mark), tap.logs()
        failures_during_outage = sum(w.failures for w in workers)

        # a new upstream on the same port: new clients and the old ones are served again
        jongodb_factory(port=port)
        with client_for(tap.uri(dbname), serverSelectionTimeoutMS=20000) as c:
            c[dbname]["after"].insert_one({"_id": 1, "back": True})
            assert c[dbname]["after"].find_one({"_id": 1}) == {"_id": 1, "back": True}
        for w in workers:
            base = w.ok
            assert w.wait_ok(base + 5, 30), "workload %s did not recover" % w.tag
    finally:
        for s in raws:
            s.close()
        for w in workers:
            w.stop()
    for w in workers:
        assert not w.wrong, w.wrong[:3]
    print("sigkill: 16 raw clients closed within %.3fs; %d workload failures during the outage"
          % (closed_within, failures_during_outage))
    assert tap.running()


def test_stalled_upstream_hangs_only_its_clients(mongotap, dbname):
    with StalledUpstream() as stalled:
        tap_stalled = mongotap(upstream=stalled.address)
        tap_ok = mongotap()
        nstalled = 8
        hung = []
        sent = []
        try:
            for i in range(nstalled):
                s = helpers.raw_connect(tap_stalled.host, tap_stalled.port)
                msg = wire.op_msg({"find": "c", "filter": {"i": i}, "$db": dbname},
                                  request_id=500 + i)
                s.sendall(msg)
                sent.append(msg)
                hung.append(s)
            # the requests reached the stalled server, unchanged
            assert stalled.wait_received(sum(map(len, sent)), 5), \
                "stalled upstream got %d of %d bytes" % (stalled.total_received(),
                                                         sum(map(len, sent)))
            assert sorted(bytes(b) for b in stalled.received.values()) == sorted(sent)

            # the healthy pair serves 200 round trips with correct answers meanwhile
            start = time.monotonic()
            with client_for(tap_ok.uri(dbname), maxPoolSize=1) as c:
                col = c[dbname]["healthy"]
                col.insert_many([{"_id": i, "sq": i * i} for i in range(20)])
                for n in range(200):
                    assert col.find_one({"_id": n % 20}) == {"_id": n % 20, "sq": (n % 20) ** 2}
            healthy_s = time.monotonic() - start
            assert healthy_s < 30

            # the stalled clients are still waiting: no byte, no close
            for s in hung:
                s.settimeout(0.2)
                with pytest.raises(socket.timeout):
                    s.recv(1)
            stats = tap_stalled.get_json("/api/stats")
            assert stats["connections"]["active"] == nstalled, stats["connections"]
            assert stats["pending_requests"] == nstalled, stats
            assert tap_stalled.get("/healthz")[0] == 200
        finally:
            for s in hung:
                s.close()
        # once the clients leave, their sessions (and upstream connections) go too
        wait_idle(tap_stalled)
    print("stalled: %d clients hung while the healthy pair did 200 round trips in %.2fs"
          % (nstalled, healthy_s))


def test_refused_upstream_closes_clients_within_a_second(mongotap):
    dead_port = helpers.free_port()
    tap = mongotap(upstream="127.0.0.1:%d" % dead_port)
    mark = len(tap.log_lines())
    n = 20
    socks = [helpers.raw_connect(tap.host, tap.port) for _ in range(n)]
    start = time.monotonic()
    for i, s in enumerate(socks):
        s.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}, request_id=i + 1))
    for s in socks:
        left = 1.0 - (time.monotonic() - start)
        _, data = helpers.wait_closed(s, max(left, 0.01))
        assert data == b""
        s.close()
    # a driver gives up on its own timeout instead of hanging
    with client_for(tap.uri("x"), serverSelectionTimeoutMS=1000) as c:
        with pytest.raises(ServerSelectionTimeoutError):
            c.x.command("ping")
    assert tap.wait_for_log(r"upstream 127\.0\.0\.1:%d unreachable" % dead_port, 5, start=mark), \
        tap.logs()
    stats = tap.get_json("/api/stats")
    assert stats["upstream_errors"] >= n, stats
    assert tap.running()


@pytest.mark.parametrize("answer", ["impossible-header", "half-reply-then-close"])
def test_misbehaving_upstream_closes_only_its_session(mongotap, answer):
    reply = wire.op_msg({"ok": 1.0, "pad": "r" * 500}, request_id=3)
    if answer == "impossible-header":
        bad = StalledUpstream(answer=wire.header(7) + b"\0" * 64)
    else:
        bad = StalledUpstream(answer=reply[:len(reply) // 2], close_after=True)
    with bad:
        tap = mongotap(upstream=bad.address)
        mark = len(tap.log_lines())
        before = tap.get_json("/api/stats")
        with helpers.raw_connect(tap.host, tap.port) as s:
            s.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}))
            elapsed, data = helpers.wait_closed(s, 1.0)
        after = tap.get_json("/api/stats")
        if answer == "impossible-header":
            # checked before forwarding: the client never sees the bad header
            assert data == b""
            assert after["protocol_errors"] == before["protocol_errors"] + 1, after
            assert tap.wait_for_log(r"warn .*impossible message header from upstream", 5,
                                    start=mark), tap.logs()
        else:
            # bytes already on their way are forwarded as they came, then the close
            assert data == reply[:len(reply) // 2]
            assert tap.wait_for_log(r"upstream closed the connection", 5, start=mark), tap.logs()
        assert tap.running() and tap.get("/healthz")[0] == 200
        wait_idle(tap)
    print("%s: client closed after %.3fs" % (answer, elapsed))


# --- client faults -------------------------------------------------------------------------------

def big_insert(dbname, size=4 * 1024 * 1024, request_id=77):
    return wire.op_msg({"insert": "big", "documents": [{"_id": 1, "blob": Binary(b"\xab" * size)}],
                        "$db": dbname}, request_id=request_id)


@pytest.mark.parametrize("how", ["reset-mid-body", "close-mid-body", "reset-mid-header"])
def test_client_gone_mid_message_frees_upstream_and_fds(mongotap, jongodb, dbname, how):
    host, port = helpers.split_hostport(jongodb)
    with RecordingRelay(host, port) as relay:
        tap = mongotap(upstream=relay.address)
        # warm-up: one driver session through, then gone, so lazily made things exist
        with client_for(tap.uri(dbname)) as c:
            assert c[dbname].command("ping")["ok"] == 1.0
        wait_idle(tap)
        assert relay.wait_closed(5)
        fds = proxy_fds(tap)

        msg = big_insert(dbname)
        cut = len(msg) // 2 if how != "reset-mid-header" else 7
        s = helpers.raw_connect(tap.host, tap.port)
        assert helpers.raw_ping(s)["ok"] == 1.0
        s.sendall(msg[:cut])
        this = relay.snapshot()[-1]
        ping_len = len(helpers.op_msg({"ping": 1, "$db": "admin"}, request_id=7))
        if how != "reset-mid-header":
            # forwarding of the partial message is under way before the client vanishes
            assert relay.wait_for(lambda _: len(this.c2s) >= ping_len + cut // 2, 5), this
        if how.startswith("reset"):
            wire.set_linger_reset(s)
        gone = time.monotonic()
        s.close()

        assert relay.wait_closed(3, [this]), "upstream side still open: %r" % this
        upstream_closed_s = this.ended_at - gone
        wait_idle(tap)
        wait_fds(tap, fds)
        # the upstream never saw a whole message that was not sent whole
        assert ping_len <= len(this.c2s) < ping_len + len(msg)
        if how == "reset-mid-header":
            # a header is only forwarded once all 16 bytes are there and checked
            assert len(this.c2s) == ping_len
        assert tap.running()
        with client_for(tap.uri(dbname)) as c:
            assert c[dbname].command("ping")["ok"] == 1.0
    print("%s: upstream side closed %.3fs after the client, fds back to %d"
          % (how, upstream_closed_s, fds))


def test_slowloris_does_not_slow_a_normal_client(mongotap, dbname):
    tap = mongotap()
    nslow, trips = 20, 200
    with client_for(tap.uri(dbname), maxPoolSize=1) as c:
        col = c[dbname]["sl"]
        col.insert_many([{"_id": i, "v": i * 3} for i in range(50)])

        def round_trips():
            start = time.monotonic()
            for n in range(trips):
                assert col.find_one({"_id": n % 50}) == {"_id": n % 50, "v": (n % 50) * 3}
            return time.monotonic() - start

        round_trips()  # warm-up
        alone = round_trips()

        slow = [helpers.raw_connect(tap.host, tap.port) for _ in range(nslow)]
        msgs = [wire.op_msg({"ping": 1, "$db": "admin", "k": k}, request_id=9000 + k)
                for k in range(nslow)]
        stop = threading.Event()
        progress = threading.Semaphore(0)
        errors = []

        def dribble():
            try:
                for i in range(max(map(len, msgs))):
                    for s, m in zip(slow, msgs):
                        if i < len(m):
                            s.send(m[i:i + 1])
                    if i == 2:
                        progress.release()
                    if stop.wait(0.1):  # the pace of the attack, not a synchronisation
                        return
            except OSError as e:
                errors.append(repr(e))
                progress.release()

        sender = threading.Thread(target=dribble, daemon=True)
        sender.start()
        try:
            assert progress.acquire(timeout=10)
            loaded = round_trips()
            overlapped = sender.is_alive()
            sender.join(30)
            assert not sender.is_alive() and not errors, errors
        finally:
            stop.set()
        assert overlapped, "the slow clients finished before the measurement did"
        assert loaded < 3 * alone + 0.5, "alone %.3fs, with %d slow clients %.3fs" % (
            alone, nslow, loaded)
        # every dribbled message was reassembled and answered
        for k, s in enumerate(slow):
            s.settimeout(10)
            (_, _, response_to, opcode), body = helpers.read_message(s)
            assert opcode == helpers.OP_MSG and response_to == 9000 + k
            assert helpers.op_msg_reply_doc(body)["ok"] == 1.0
            s.close()
    print("slowloris: %d round trips alone %.3fs, beside %d one-byte-per-100ms clients %.3fs"
          % (trips, alone, nslow, loaded))


CYCLES = 3000


def test_connect_close_cycles_leave_nothing(mongotap):
    tap = mongotap(env=helpers.small_quarantine_env())

    def cycles(n, first_id):
        for i in range(n):
            with helpers.raw_connect(tap.host, tap.port) as s:
                assert helpers.raw_ping(s, request_id=first_id + i)["ok"] == 1.0

    cycles(200, 1)  # warm-up: free lists and allocator arenas reach their working size
    wait_idle(tap)
    fds = proxy_fds(tap)
    rss = procinfo.rss_kib(tap.pid)
    total = tap.get_json("/api/stats")["connections"]["total"]
    start = time.monotonic()
    cycles(CYCLES, 1000)
    took = time.monotonic() - start
    wait_idle(tap)
    wait_fds(tap, fds)
    rss_after = procinfo.rss_kib(tap.pid)
    stats = tap.get_json("/api/stats")
    print("%d cycles in %.2fs: fds %d -> %d, VmRSS %d -> %d KiB, connections.total +%d"
          % (CYCLES, took, fds, proxy_fds(tap), rss, rss_after,
             stats["connections"]["total"] - total))
    assert rss_after <= rss + 8 * 1024, "VmRSS %d KiB -> %d KiB" % (rss, rss_after)
    assert stats["connections"]["refused"] == 0
    assert tap.running()
    # each accepted connection counts once
    assert stats["connections"]["total"] - total == CYCLES, stats["connections"]


def test_client_that_never_reads_holds_bounded_memory(mongotap, dbname):
    """Backpressure: a client pipelines finds of 16 MB each and reads nothing. The proxy must
    stop reading from the upstream instead of buffering the replies; other clients go on; once
    the client reads, every reply arrives whole."""
    tap = mongotap()
    blob = Binary(b"\xcd" * (1024 * 1024 - 200))
    with client_for(tap.uri(dbname)) as c:
        c[dbname]["big"].insert_many([{"_id": i, "b": blob} for i in range(15)])
        c[dbname]["small"].insert_many([{"_id": i, "v": -i} for i in range(15)])
    rss0 = procinfo.rss_kib(tap.pid)
    read0 = tap.get_json("/api/stats")["bytes"]["from_upstream"]
    nfinds = 6
    with helpers.raw_connect(tap.host, tap.port, timeout=30) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        for i in range(nfinds):
            hog.sendall(wire.op_msg({"find": "big", "filter": {}, "batchSize": 100,
                                     "$db": dbname}, request_id=i + 1))

        def upstream_read():
            return tap.get_json("/api/stats")["bytes"]["from_upstream"] - read0

        # replies are flowing: the proxy has read at least its queue's worth of them
        assert procinfo.wait_until(lambda: upstream_read() >= 4 * 1024 * 1024, 15), \
            upstream_read()
        with client_for(tap.uri(dbname), maxPoolSize=1) as c:
            for n in range(100):
                assert c[dbname]["small"].find_one({"_id": n % 15}) == {"_id": n % 15,
                                                                        "v": -(n % 15)}
        held_back = upstream_read()
        rss_peak = procinfo.rss_kib(tap.pid)
        total = nfinds * 15 * len(blob)
        assert held_back < total // 2, "the proxy read %d of %d reply bytes for a client that " \
            "read none" % (held_back, total)
        assert rss_peak - rss0 < 48 * 1024, "VmRSS grew %d KiB while a client read nothing" % (
            rss_peak - rss0)
        reader = wire.MessageReader(hog)
        for i in range(nfinds):
            (_, _, response_to, _), body = reader.read()
            assert response_to == i + 1
            doc = wire.reply_doc(body)
            assert doc["ok"] == 1.0 and len(doc["cursor"]["firstBatch"]) == 15
            assert all(bytes(d["b"]) == bytes(blob) for d in doc["cursor"]["firstBatch"])
    print("never-reading client: proxy read %.1f of %.1f MB of replies, VmRSS %d -> %d KiB"
          % (held_back / 1e6, total / 1e6, rss0, rss_peak))


# --- limits --------------------------------------------------------------------------------------

def test_max_connections_refuses_the_sixth(mongotap):
    tap = mongotap("--max-connections", "5")
    mark = len(tap.log_lines())
    held = []
    try:
        for i in range(5):
            s = helpers.raw_connect(tap.host, tap.port)
            assert helpers.raw_ping(s, request_id=i + 1)["ok"] == 1.0
            held.append(s)
        with helpers.raw_connect(tap.host, tap.port) as sixth:
            sixth.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}, request_id=6))
            elapsed, data = helpers.wait_closed(sixth, 1.0)
        assert data == b""
        assert tap.wait_for_log(r"refused 127\.0\.0\.1:\d+: --max-connections reached", 5,
                                start=mark), tap.logs()
        stats = tap.get_json("/api/stats")
        assert stats["connections"]["refused"] == 1, stats["connections"]
        assert stats["connections"]["active"] == 5
        # the five held connections are untouched
        for i, s in enumerate(held):
            assert helpers.raw_ping(s, request_id=20 + i)["ok"] == 1.0
        # one leaves: a newcomer gets its place
        held.pop().close()
        assert procinfo.wait_until(lambda: active_connections(tap) == 4, 5)
        with helpers.raw_connect(tap.host, tap.port) as s:
            assert helpers.raw_ping(s, request_id=40)["ok"] == 1.0
    finally:
        for s in held:
            s.close()
    print("max-connections 5: sixth closed in %.3fs" % elapsed)


def test_out_of_file_descriptors_then_recovers(mongotap, dbname):
    tap = mongotap()
    limit = 64
    resource.prlimit(tap.pid, resource.RLIMIT_NOFILE, (limit, limit))
    assert resource.prlimit(tap.pid, resource.RLIMIT_NOFILE) == (limit, limit)
    mark = len(tap.log_lines())
    held = []
    spare = None
    try:
        # each served client costs the proxy two fds: open until one is not served
        turned_away = 0
        for i in range(limit):
            s = helpers.raw_connect(tap.host, tap.port, timeout=3)
            try:
                helpers.raw_ping(s, request_id=i + 1)
                held.append(s)
            except (EOFError, OSError):
                turned_away += 1
                s.close()
                break
        assert turned_away, "never ran out with %d fds" % limit
        assert len(held) >= 10, "only %d clients served under a limit of %d" % (len(held), limit)
        # With one fd left, a newcomer is accepted and its upstream socket fails. Take that
        # fd with an idle admin connection, so that the newcomers below meet a full table at
        # accept() itself (where libuv closes them on the proxy's behalf).
        if procinfo.fd_count(tap.pid) == limit - 1:
            spare = socket.create_connection(tap.admin, timeout=3)
            assert procinfo.wait_until(lambda: procinfo.fd_count(tap.pid) == limit, 5)

        # saturated: a client knocks every 50 ms for 2 s; each is closed, and in between the
        # proxy must sit idle, not spin on a listener it cannot accept from
        cpu0 = procinfo.cpu_seconds(tap.pid)
        knock_start = time.monotonic()
        knocks, hung = 0, 0
        pace = threading.Event()
        while time.monotonic() - knock_start < 2.0:
            pace.wait(0.05)
            with socket.create_connection((tap.host, tap.port), timeout=1) as k:
                try:
                    k.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}))
                    if k.recv(1) != b"":
                        hung += 1
                except socket.timeout:
                    hung += 1
                except OSError:
                    pass
            knocks += 1
        cpu = procinfo.cpu_seconds(tap.pid) - cpu0
        assert hung == 0, "%d of %d clients were neither served nor closed" % (hung, knocks)
        assert cpu < 0.5, "proxy used %.2fs of CPU over 2s of saturation" % cpu
        assert tap.running()
        line = tap.wait_for_log(
            r"accept failed.*|.*too many open files.*|refused .*(descriptor|fd).*", 3, start=mark)
    finally:
        for s in held:
            s.close()
        if spare:
            spare.close()
    wait_idle(tap, 10)
    assert tap.get("/healthz")[0] == 200
    with client_for(tap.uri(dbname)) as c:
        c[dbname]["fd"].insert_one({"_id": 1})
        assert c[dbname]["fd"].find_one({"_id": 1}) == {"_id": 1}
    print("fd limit %d: %d clients served, then %d turned away in 2s using %.2fs CPU; log: %s"
          % (limit, len(held), knocks, cpu, line.group(0) if line else None))
    # an operator must be able to tell why clients are being dropped
    assert line, ("mongotap turned %d clients away for want of file descriptors and logged "
                  "nothing:\n%s" % (knocks + turned_away, tap.logs()[-3000:]))


# --- shutdown ------------------------------------------------------------------------------------

def test_sigterm_with_a_reply_that_never_comes_exits_in_bounded_time(mongotap, tmp_path):
    report = tmp_path / "report.json"
    with StalledUpstream() as stalled:
        tap = mongotap("--report", report, upstream=stalled.address)
        msg = helpers.op_msg({"ping": 1, "$db": "admin"})
        with helpers.raw_connect(tap.host, tap.port) as s:
            s.sendall(msg)
            assert stalled.wait_received(len(msg), 5)
            start = time.monotonic()
            tap.proc.send_signal(signal.SIGTERM)
            rc = tap.proc.wait(15)
            took = time.monotonic() - start
            _, data = helpers.wait_closed(s, 1.0)
    assert rc == 0 and tap.stop() == 0
    assert data == b""
    assert 4.0 < took < 8.0, "exited %.2fs after SIGTERM (the drain bound is 5 s)" % took
    assert tap.wait_for_log(r"in-flight reply not finished in time", 1), tap.logs()
    assert json.loads(report.read_text())
    print("sigterm with a stalled reply: exit 0 after %.2fs" % took)


class RawWorker(threading.Thread):
    """A raw-socket client sending finds and inserts back to back until the proxy closes it,
    recording whether the close fell between replies (clean) or inside one (truncated)."""

    def __init__(self, tap, dbname, k):
        super().__init__(daemon=True, name="raw-%d" % k)
        self.tap, self.dbname, self.k = tap, dbname, k
        self.replies = 0
        self.outcome = None
        self.cond = threading.Condition()

    def run(self):
        rid = self.k * 1_000_000
        try:
            with helpers.raw_connect(self.tap.host, self.tap.port, timeout=20) as s:
                reader = wire.MessageReader(s)
                while True:
                    rid += 1
                    if rid % 3 == 0:
                        cmd = {"insert": "sd_%d" % self.k, "$db": self.dbname,
                               "documents": [{"_id": rid, "pad": "p" * 2000}]}
                    else:
                        cmd = {"find": "seed", "filter": {}, "batchSize": 150,
                               "$db": self.dbname}
                    try:
                        s.sendall(wire.op_msg(cmd, request_id=rid))
                    except OSError:
                        self.outcome = "closed before send"
                        return
                    msg = reader.read()
                    if msg is None:
                        self.outcome = "clean close (%s) with a request in flight" % reader.ended_by
                        return
                    (_, _, response_to, _), body = msg
                    assert response_to == rid
                    assert wire.reply_doc(body)["ok"] == 1.0
                    with self.cond:
                        self.replies += 1
                        self.cond.notify_all()
        except wire.Truncated as e:
            self.outcome = "TRUNCATED: %s" % e
        except Exception as e:  # noqa: BLE001
            self.outcome = "ERROR: %r" % e

    def wait_replies(self, n, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.replies >= n or self.outcome, timeout)


def test_sigterm_mid_workload_drains_and_writes_outputs(mongotap, dbname, tmp_path):
    findings = tmp_path / "findings.jsonl"
    report = tmp_path / "report.json"
    tap = mongotap("--findings-log", findings, "--report", report)
    with client_for(tap.uri(dbname)) as c:
        c[dbname]["seed"].insert_many([{"_id": i, "pad": "s" * 1500} for i in range(150)])
        # an N+1: one find of 10 parents, then one find per parent's child
        c[dbname]["child"].insert_many([{"_id": "c%d" % i} for i in range(10)])
        c[dbname]["parent"].insert_many([{"_id": i, "child": "c%d" % i} for i in range(10)])
        for p in list(c[dbname]["parent"].find({})):
            c[dbname]["child"].find_one({"_id": p["child"]})
    assert procinfo.wait_until(lambda: tap.get_json("/api/findings")["findings"], 5), \
        "no N+1 finding before shutdown"

    workers = [RawWorker(tap, dbname, k) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        assert w.wait_replies(10, 30), "worker %d: %s" % (w.k, w.outcome)
    replies_at_term = sum(w.replies for w in workers)
    tap.proc.send_signal(signal.SIGTERM)
    rc = tap.proc.wait(15)
    for w in workers:
        w.join(10)
    assert rc == 0, tap.logs()[-3000:]
    assert tap.stop() == 0
    outcomes = [w.outcome for w in workers]
    assert not any(w.is_alive() for w in workers)
    assert all(o and (o.startswith("clean close") or o == "closed before send")
               for o in outcomes), outcomes

    lines = findings.read_text().splitlines()
    assert lines, "findings log is empty"
    ids = [json.loads(line)["id"] for line in lines]
    rep = json.loads(report.read_text())
    assert rep["findings"] and {f["id"] for f in rep["findings"]} >= set(ids), rep.keys()
    assert not os.path.exists(str(report) + ".tmp")
    assert "stopped" in tap.logs()
    print("sigterm: 8 clients, %d replies before the signal, %d after it; outcomes: %s; "
          "%d finding line(s)" % (replies_at_term,
                                  sum(w.replies for w in workers) - replies_at_term,
                                  sorted(set(outcomes)), len(lines)))
