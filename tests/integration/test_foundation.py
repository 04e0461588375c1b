"""The transparent proxy, end to end: real drivers (PyMongo, the Node.js driver) and raw sockets
talk to jongodb through mongotap. Results through the proxy must equal the same operations done
straight against jongodb; broken clients and a missing upstream close only their own connection."""

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pymongo
import pytest
from bson.binary import Binary
from pymongo import monitoring
from pymongo.errors import DuplicateKeyError

import helpers


class Counter(monitoring.CommandListener):
    def __init__(self):
        self.names = []
        self.failures = []
        self._lock = threading.Lock()

    def started(self, event):
        with self._lock:
            self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        if event.command_name == "endSessions":
            return  # jongodb does not implement it; drivers send it when a client closes
        with self._lock:
            self.failures.append((event.command_name, event.failure))

    def count(self, name):
        with self._lock:
            return self.names.count(name)


def client_for(uri, **kwargs):
    kwargs.setdefault("serverSelectionTimeoutMS", 10000)
    return pymongo.MongoClient(uri, **kwargs)


def direct_uri(jongodb, db="admin"):
    return "mongodb://%s/%s?directConnection=true" % (jongodb, db)


# --- the same scenario straight and through the proxy ---------------------------------------------

def crud_scenario(client, dbname):
    """A fixed sequence of writes and reads; returns everything the server answered."""
    col = client[dbname]["items"]
    out = {}
    out["insert_one"] = col.insert_one({"_id": 0, "kind": "first", "n": 0}).inserted_id
    docs = [{"_id": i, "kind": "fizz" if i % 3 == 0 else "plain", "n": i,
             "nested": {"a": [i, str(i)], "b": {"c": i * 1.5}}} for i in range(1, 301)]
    out["insert_many"] = col.insert_many(docs).inserted_ids
    try:
        col.insert_one({"_id": 5})
        out["duplicate"] = "no error"
    except DuplicateKeyError as e:
        out["duplicate"] = e.code
    out["find_one"] = col.find_one({"_id": 42})
    out["find_filter"] = list(col.find({"kind": "fizz", "n": {"$lt": 50}}).sort("_id", 1))
    out["find_projection"] = list(col.find({"n": {"$in": [3, 4, 5]}}, {"n": 1, "_id": 0})
                                  .sort("n", -1))
    out["find_skip_limit"] = [d["_id"] for d in col.find({}).sort("_id", 1).skip(10).limit(5)]
    out["count_fizz"] = col.count_documents({"kind": "fizz"})
    r = col.update_one({"_id": 1}, {"$set": {"kind": "updated"}})
    out["update_one"] = (r.matched_count, r.modified_count)
    r = col.update_many({"n": {"$gt": 290}}, {"$inc": {"n": 1000}})
    out["update_many"] = (r.matched_count, r.modified_count)
    out["delete_one"] = col.delete_one({"_id": 2}).deleted_count
    out["delete_many"] = col.delete_many({"kind": "plain", "n": {"$lt": 20}}).deleted_count
    out["after"] = list(col.find({}).sort("_id", 1))
    out["count_all"] = col.count_documents({})
    return out


def test_pymongo_crud_same_as_direct(mongotap, jongodb, dbname):
    tap = mongotap()
    with client_for(direct_uri(jongodb)) as direct:
        expected = crud_scenario(direct, dbname + "_direct")
    listener = Counter()
    with client_for(tap.uri(dbname), event_listeners=[listener]) as proxied:
        got = crud_scenario(proxied, dbname + "_proxied")
    assert got == expected
    assert got["count_fizz"] == 100 and got["duplicate"] == 11000
    assert listener.count("insert") >= 3 and listener.count("find") >= 5
    assert tap.running()


def test_cursor_getmore_same_as_direct(mongotap, jongodb, dbname):
    tap = mongotap()
    docs = [{"_id": i, "v": "x" * (i % 50)} for i in range(500)]
    with client_for(direct_uri(jongodb)) as direct:
        direct[dbname]["c"].insert_many(docs)
        expected = list(direct[dbname]["c"].find({}, batch_size=7).sort("_id", 1))
    listener = Counter()
    with client_for(tap.uri(dbname), event_listeners=[listener]) as proxied:
        got = list(proxied[dbname]["c"].find({}, batch_size=7).sort("_id", 1))
    assert len(expected) == 500
    assert got == expected
    # 500 documents in batches of 7: one find and at least 71 getMore round trips
    assert listener.count("find") == 1
    assert listener.count("getMore") >= 71, listener.names[:20]
    assert not listener.failures


def test_aggregate_same_as_direct(mongotap, jongodb, dbname):
    tap = mongotap()
    docs = [{"_id": i, "shop": "s%d" % (i % 4), "qty": i % 9, "price": (i * 37) % 101}
            for i in range(400)]
    pipeline = [
        {"$match": {"qty": {"$gte": 2}}},
        {"$sort": {"_id": 1}},
        {"$group": {"_id": "$shop", "orders": {"$sum": 1}, "units": {"$sum": "$qty"},
                    "first": {"$first": "$price"}}},
        {"$sort": {"_id": 1}},
    ]
    with client_for(direct_uri(jongodb)) as direct:
        direct[dbname]["orders"].insert_many(docs)
        expected = list(direct[dbname]["orders"].aggregate(pipeline))
        expected_batched = list(direct[dbname]["orders"].aggregate(
            [{"$sort": {"_id": 1}}], batchSize=10))
    with client_for(tap.uri(dbname)) as proxied:
        got = list(proxied[dbname]["orders"].aggregate(pipeline))
        got_batched = list(proxied[dbname]["orders"].aggregate([{"$sort": {"_id": 1}}],
                                                               batchSize=10))
    assert len(expected) == 4 and sum(g["orders"] for g in expected) > 0
    assert got == expected
    assert len(got_batched) == 400 and got_batched == expected_batched


# --- the Node.js driver ---------------------------------------------------------------------------

def run_node_crud(uri, db):
    r = subprocess.run(["node", "crud.mjs", uri, db], cwd=helpers.NODE_DIR,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "node crud.mjs %s failed (%d):\n%s" % (uri, r.returncode, r.stderr)
    return json.loads(r.stdout)


def test_node_driver_same_as_direct(mongotap, jongodb, dbname):
    tap = mongotap()
    expected = run_node_crud(direct_uri(jongodb, dbname), dbname + "_direct")
    got = run_node_crud(tap.uri(dbname), dbname + "_proxied")
    assert got == expected
    assert got["insertMany"] == 300 and got["getMoreUsed"] is True
    assert len(got["cursor"]) == got["count"] > 250


# --- large binary payloads ------------------------------------------------------------------------

MAX_PAYLOAD = 4 * 1024 * 1024


def payload(i):
    """Document i's payload: 0 B to 4 MiB, mostly small, regenerated from its own seed."""
    rng = random.Random(1000 + i)
    fixed = {0: 0, 1: 1, 2: MAX_PAYLOAD, 3: MAX_PAYLOAD - 1, 4: 16 * 1024 * 1024 // 8,
             5: 65536, 6: 65535, 7: 16}
    size = fixed.get(i, int(MAX_PAYLOAD * rng.random() ** 20))
    return rng.randbytes(size)


def test_binary_payloads_byte_identical(mongotap, dbname):
    tap = mongotap()
    n = 1000
    total = 0
    with client_for(tap.uri(dbname)) as client:
        col = client[dbname]["blobs"]
        batch, batch_bytes = [], 0
        for i in range(n):
            data = payload(i)
            total += len(data)
            batch.append({"_id": i, "size": len(data), "data": Binary(data)})
            batch_bytes += len(data)
            if batch_bytes > 24 * 1024 * 1024 or len(batch) == 100:
                col.insert_many(batch)
                batch, batch_bytes = [], 0
        if batch:
            col.insert_many(batch)
        assert 20 * 1024 * 1024 < total < 400 * 1024 * 1024, total

        seen = 0
        for doc in col.find({}).sort("_id", 1).batch_size(64):
            assert doc["_id"] == seen
            expected = payload(seen)
            assert doc["size"] == len(expected)
            assert bytes(doc["data"]) == expected, "payload %d differs" % seen
            seen += 1
        assert seen == n
        # single-document reads of the largest and the empty payload
        assert bytes(col.find_one({"_id": 2})["data"]) == payload(2)
        assert bytes(col.find_one({"_id": 0})["data"]) == b""
    assert tap.running()


# --- many clients at once -------------------------------------------------------------------------

def test_fifty_clients_see_only_their_own_replies(mongotap, jongodb, dbname):
    tap = mongotap()
    nclients, rounds = 50, 6
    barrier = threading.Barrier(nclients)
    errors = []

    def worker(k):
        try:
            with client_for(tap.uri(dbname), maxPoolSize=1, appname="client-%d" % k) as c:
                col = c[dbname]["tagged"]
                barrier.wait(timeout=60)
                for r in range(rounds):
                    body = "%d:%d:" % (k, r) + "z" * (k * 37 + r)
                    col.insert_one({"_id": "%d-%d" % (k, r), "tag": k, "round": r, "body": body})
                    mine = list(col.find({"tag": k}).sort("round", 1))
                    if [d["round"] for d in mine] != list(range(r + 1)):
                        errors.append("client %d round %d saw rounds %r"
                                      % (k, r, [d["round"] for d in mine]))
                    if any(d["tag"] != k or not d["body"].startswith("%d:" % k) for d in mine):
                        errors.append("client %d got another client's documents" % k)
                    one = col.find_one({"_id": "%d-%d" % (k, r)})
                    if one is None or one["body"] != body:
                        errors.append("client %d round %d: find_one returned %r"
                                      % (k, r, one and one["_id"]))
                    n = col.count_documents({"tag": k})
                    if n != r + 1:
                        errors.append("client %d round %d: count %d" % (k, r, n))
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            errors.append("client %d: %r" % (k, e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(nclients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "clients still running after 180 s"
    assert not errors, "\n".join(errors[:20])
    with client_for(direct_uri(jongodb)) as direct:
        assert direct[dbname]["tagged"].count_documents({}) == nclients * rounds
    assert tap.running()


# --- failures stay on their own connection --------------------------------------------------------

def test_upstream_down_closes_client_promptly_then_recovers(mongotap, jongodb_factory, dbname):
    port = helpers.free_port()
    tap = mongotap(upstream="127.0.0.1:%d" % port)
    mark = len(tap.log_lines())

    with helpers.raw_connect(tap.host, tap.port) as s:
        s.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}))
        # socket.timeout (a failure) unless the proxy closes the connection within 1 s
        elapsed, data = helpers.wait_closed(s, 1.0)
    assert elapsed < 1.0
    assert data == b"", "mongotap answered on its own: %r" % data[:64]

    assert tap.running()
    assert tap.get("/healthz")[0] == 200
    assert tap.wait_for_log(r"(?i)upstream", 5, start=mark), \
        "no log line about the unreachable upstream:\n" + tap.logs()
    stats = tap.get_json("/api/stats")
    assert stats["upstream_errors"] >= 1, stats

    # the upstream comes up on that port: new connections are served
    jongodb_factory(port=port)
    with client_for(tap.uri(dbname)) as c:
        assert c[dbname].command("ping")["ok"] == 1.0
        c[dbname]["after"].insert_one({"_id": 1, "ok": True})
        assert c[dbname]["after"].find_one({"_id": 1}) == {"_id": 1, "ok": True}
    assert tap.running()


class _FindLoop(threading.Thread):
    """A PyMongo client finding 200 documents over and over until stopped."""

    def __init__(self, uri, dbname):
        super().__init__(daemon=True)
        self.uri, self.dbname = uri, dbname
        self.iterations = 0
        self.errors = []
        self.cond = threading.Condition()
        self.stop_event = threading.Event()

    def run(self):
        try:
            with client_for(self.uri, maxPoolSize=1) as c:
                col = c[self.dbname]["loop"]
                while not self.stop_event.is_set():
                    docs = list(col.find({}, batch_size=50).sort("_id", 1))
                    if [d["_id"] for d in docs] != list(range(200)):
                        self.errors.append("iteration %d: %d docs" % (self.iterations, len(docs)))
                    with self.cond:
                        self.iterations += 1
                        self.cond.notify_all()
        except Exception as e:  # noqa: BLE001
            self.errors.append(repr(e))
            with self.cond:
                self.cond.notify_all()

    def wait_iterations(self, n, timeout=30):
        with self.cond:
            return self.cond.wait_for(lambda: self.iterations >= n or self.errors, timeout)


@pytest.mark.parametrize("length", [8, 60_000_000, 15, -1, 48_000_001])
def test_impossible_header_closes_only_that_connection(mongotap, jongodb, dbname, length):
    tap = mongotap()
    with client_for(direct_uri(jongodb)) as direct:
        direct[dbname]["loop"].insert_many([{"_id": i} for i in range(200)])
    loop = _FindLoop(tap.uri(dbname), dbname)
    loop.start()
    try:
        assert loop.wait_iterations(2), "find loop did not start: %r" % loop.errors
        mark = len(tap.log_lines())

        with helpers.raw_connect(tap.host, tap.port) as bad:
            bad.sendall(helpers.header(length))
            elapsed, data = helpers.wait_closed(bad, 2.0)
        assert data == b""

        # a client that pinged fine and then sends a bad header is closed too
        with helpers.raw_connect(tap.host, tap.port) as good_then_bad:
            assert helpers.raw_ping(good_then_bad)["ok"] == 1.0
            good_then_bad.sendall(helpers.header(length, request_id=99))
            helpers.wait_closed(good_then_bad, 2.0)

        assert tap.wait_for_log(r"\swarn\s", 5, start=mark), \
            "no warn line for the bad header:\n" + tap.logs()
        done = loop.iterations
        assert loop.wait_iterations(done + 5), "find loop stalled: %r" % loop.errors
    finally:
        loop.stop_event.set()
        loop.join(30)
    assert not loop.errors, loop.errors
    assert tap.running()


class _RecordingUpstream(threading.Thread):
    """A TCP server that accepts connections and records every byte it receives."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.accepted = 0
        self._conns = []

    def run(self):
        self.sock.settimeout(0.2)
        while self.sock.fileno() != -1:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        first = True
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                if first and helpers.MONITOR_MARK in chunk:
                    # mongotap's upstream monitor: neither counted nor answered
                    self.accepted -= 1
                    while conn.recv(65536):
                        pass
                    return
                first = False
                self.received.append(chunk)
        except OSError:
            return

    def close(self):
        self.sock.close()
        for c in self._conns:
            c.close()


def test_impossible_header_never_reaches_upstream(mongotap):
    upstream = _RecordingUpstream()
    upstream.start()
    try:
        tap = mongotap(upstream="127.0.0.1:%d" % upstream.port)
        for length in (8, 60_000_000):
            with helpers.raw_connect(tap.host, tap.port) as bad:
                bad.sendall(helpers.header(length))
                helpers.wait_closed(bad, 2.0)
        assert b"".join(upstream.received) == b""
        # and a valid message does reach it, unchanged
        msg = helpers.op_msg({"ping": 1, "$db": "admin"}, request_id=1234)
        with helpers.raw_connect(tap.host, tap.port) as ok:
            ok.sendall(msg)
            deadline = time.monotonic() + 5
            while b"".join(upstream.received) != msg and time.monotonic() < deadline:
                time.sleep(0.01)
        assert b"".join(upstream.received) == msg
        assert tap.running()
    finally:
        upstream.close()


# --- listeners and limits -------------------------------------------------------------------------

def test_several_listen_addresses(mongotap, dbname):
    tap = mongotap("--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0")
    assert len(tap.listen) == 2 and tap.listen[0][1] != tap.listen[1][1]
    for i, (host, port) in enumerate(tap.listen):
        uri = "mongodb://%s:%d/%s?directConnection=true" % (host, port, dbname)
        with client_for(uri) as c:
            c[dbname]["l"].insert_one({"_id": i})
            assert sorted(d["_id"] for d in c[dbname]["l"].find()) == list(range(i + 1))


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_listen_on_ipv6_loopback(mongotap, dbname):
    tap = mongotap("--listen", "127.0.0.1:0", "--listen", "[::1]:0")
    host, port = tap.listen[1]
    assert host == "::1"
    with client_for("mongodb://[::1]:%d/%s?directConnection=true" % (port, dbname)) as c:
        assert c[dbname].command("ping")["ok"] == 1.0


def test_max_connections_refuses_the_third(mongotap):
    tap = mongotap("--max-connections", "2")
    first = helpers.raw_connect(tap.host, tap.port)
    second = helpers.raw_connect(tap.host, tap.port)
    try:
        assert helpers.raw_ping(first, 1)["ok"] == 1.0
        assert helpers.raw_ping(second, 2)["ok"] == 1.0
        with helpers.raw_connect(tap.host, tap.port) as third:
            elapsed, data = helpers.wait_closed(third, 1.0)
            assert data == b""
        # the first two still work
        assert helpers.raw_ping(first, 3)["ok"] == 1.0
        assert helpers.raw_ping(second, 4)["ok"] == 1.0
        stats = tap.get_json("/api/stats")
        assert stats["connections"]["refused"] == 1, stats["connections"]
        assert stats["connections"]["active"] == 2, stats["connections"]
    finally:
        first.close()
        second.close()
    # a slot frees up once a client leaves
    deadline = time.monotonic() + 5
    while tap.get_json("/api/stats")["connections"]["active"] > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    with helpers.raw_connect(tap.host, tap.port) as again:
        assert helpers.raw_ping(again, 5)["ok"] == 1.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_with_clients_connected(mongotap, dbname, sig):
    tap = mongotap()
    idle = helpers.raw_connect(tap.host, tap.port)
    try:
        assert helpers.raw_ping(idle)["ok"] == 1.0
        with client_for(tap.uri(dbname)) as c:
            c[dbname]["s"].insert_one({"_id": 1})
            start = time.monotonic()
            assert tap.stop(sig) == 0, tap.logs()
            assert time.monotonic() - start < 7, "shutdown took longer than its 5 s bound"
        # the proxy is gone: the idle client sees its connection closed
        helpers.wait_closed(idle, 2.0)
    finally:
        idle.close()
    with pytest.raises(OSError):
        helpers.raw_connect(tap.host, tap.port, timeout=1).close()


# --- the command line -----------------------------------------------------------------------------

SPEC_FLAGS = ["--listen", "--upstream", "--admin", "--admin-token", "--window-gap-ms",
              "--window-max-ms", "--n1-threshold", "--findings-log", "--report",
              "--max-connections", "--max-shapes", "--log-level", "--log-values"]


def run_cli(*args, env=None, timeout=20):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([helpers.mongotap_bin()] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)


def test_help_lists_every_flag():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    missing = [f for f in SPEC_FLAGS if f not in r.stdout]
    assert not missing, "--help does not list %s" % missing
    for word in ("console", "report", "--version"):
        assert word in r.stdout


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert "mongotap" in r.stdout and any(ch.isdigit() for ch in r.stdout), r.stdout
    assert len(r.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize("args,flag", [
    (["--window-gap-ms", "abc"], "--window-gap-ms"),
    (["--bogus"], "--bogus"),
    (["--max-connections", "-3"], "--max-connections"),
    (["--n1-threshold", ""], "--n1-threshold"),
    (["--upstream", "nohostport"], "--upstream"),
    (["--listen", "127.0.0.1:99999"], "--listen"),
    (["--log-level", "loud"], "--log-level"),
    (["--window-gap-ms"], "--window-gap-ms"),
    # a flag followed by another flag is missing its value: the error names the first
    (["--report", "--log-values"], "--report: missing value"),
    (["--admin", "nonsense"], "HOST:PORT or off"),
    (["--ignore-ns", "nodot"], "--ignore-ns"),
])
def test_bad_flag_or_value_exits_2_naming_it(args, flag):
    r = run_cli("--listen", "127.0.0.1:0", "--admin", "off", *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one line on stderr, got:\n" + r.stderr
    assert flag in lines[0], lines[0]
    assert "ready" not in r.stderr


def test_admin_address_errors_say_what_is_wrong():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run_cli("--listen", "127.0.0.1:0", "--admin", "127.0.0.1:%d" % port)
    assert r.returncode == 1, r.stderr
    assert "cannot listen for admin on 127.0.0.1:%d" % port in r.stderr, r.stderr
    assert "address already in use" in r.stderr and "IP address" not in r.stderr, r.stderr
    assert "--admin off" in r.stderr, r.stderr
    r = run_cli("--listen", "127.0.0.1:0", "--admin", "admin.example:27080")
    assert r.returncode == 1, r.stderr
    assert "--admin takes an IP address (or off)" in r.stderr, r.stderr


def test_bad_environment_value_exits_2():
    r = run_cli("--admin", "off", env={"MONGOTAP_WINDOW_GAP_MS": "abc"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "WINDOW_GAP_MS" in lines[0].upper().replace("-", "_"), r.stderr


def test_upstream_from_environment(mongotap, jongodb, dbname):
    tap = mongotap(upstream=None, env={"MONGOTAP_UPSTREAM": jongodb})
    with client_for(tap.uri(dbname)) as c:
        c[dbname]["env"].insert_one({"_id": "via-env"})
        assert c[dbname]["env"].find_one()["_id"] == "via-env"


def test_upstream_flag_overrides_environment(mongotap, jongodb, dbname):
    closed = "127.0.0.1:%d" % helpers.free_port()
    tap = mongotap(env={"MONGOTAP_UPSTREAM": closed})  # the fixture adds --upstream <jongodb>
    with client_for(tap.uri(dbname)) as c:
        assert c[dbname].command("ping")["ok"] == 1.0
        c[dbname]["env"].insert_one({"_id": "via-flag"})
        assert c[dbname]["env"].count_documents({}) == 1
