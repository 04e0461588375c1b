"""Accounting checked against what the clients themselves saw: a PyMongo CommandListener records
every command, reply and failure, and /api/stats must agree with it shape by shape (count,
errors, documents, latency, bytes, timestamps), with the expected shape strings computed here
from SPEC section 3. Also the admin API around it (/api/connections, top-level /api/stats
fields, ?limit, errors, reset, --max-shapes), the Node.js driver's handshake, and traffic jongodb
cannot produce (OP_COMPRESSED, writeErrors, moreToCome reply streams) from a hand-written
upstream."""

import datetime
import json
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib

import bson
import pymongo
import pytest
from bson.int64 import Int64
from bson.son import SON
from pymongo import monitoring
from pymongo.errors import DuplicateKeyError, OperationFailure

import helpers
from faults import wire
from helpers import poll

ISO_MS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# SPEC section 3: counted, but never part of a request window
MONITORING = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue",
              "endsessions", "getlasterror"}
WRITES = {"insert", "update", "delete"}


# --- expected shapes, written from SPEC section 3 ----------------------------------------------

COLLAPSED_ARRAYS = {"$in", "$nin", "$all"}


def render_shape(value, key=None):
    """value with every literal replaced by "?", field names and operators kept in order;
    an $in/$nin/$all array becomes ["?"] whatever its length."""
    if isinstance(value, dict):
        return "{" + ", ".join("%s: %s" % (json.dumps(k), render_shape(v, k))
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        if key in COLLAPSED_ARRAYS:
            return '["?"]'
        return "[" + ", ".join(render_shape(v) for v in value) + "]"
    return '"?"'


def command_shape(name, cmd):
    """The shape of a command: its filter, query or pipeline; for update and delete the first
    statement's q (and u), as {"q": ..., "u": ...}; "{}" for commands without one."""
    lname = name.lower()
    if lname == "find" and isinstance(cmd.get("filter"), dict):
        return render_shape(cmd["filter"])
    if lname in ("count", "distinct", "findandmodify") and isinstance(cmd.get("query"), dict):
        return render_shape(cmd["query"])
    if lname == "aggregate" and isinstance(cmd.get("pipeline"), list):
        return render_shape(cmd["pipeline"])
    if lname in ("update", "delete"):
        statements = cmd.get("updates" if lname == "update" else "deletes") or [{}]
        first = statements[0]
        out = '{"q": ' + render_shape(first.get("q", {}))
        if lname == "update":
            out += ', "u": ' + render_shape(first.get("u", {}))
        return out + "}"
    return "{}"


def collection_of(name, cmd):
    value = cmd.get(name)
    return value if isinstance(value, str) else ""


def test_shape_renderer_matches_the_spec_examples():
    # the examples of SPEC section 3, so that the expectations below rest on them
    assert render_shape({"_id": 5}) == '{"_id": "?"}'
    assert render_shape({"age": {"$gt": 30}}) == '{"age": {"$gt": "?"}}'
    assert render_shape({"tags": {"$in": [1, 2, 3]}}) == '{"tags": {"$in": ["?"]}}'
    assert render_shape({"tags": {"$in": ["x"]}}) == render_shape({"tags": {"$in": []}})


# --- a listener that keeps everything -----------------------------------------------------------

class Recorder(monitoring.CommandListener):
    """Every started command in order, and the reply or failure of each by request id."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started_events = []    # (request_id, name, db, command)
        self.outcomes = {}          # request_id -> ("ok", reply) | ("failed", failure)

    def started(self, event):
        with self._lock:
            self.started_events.append((event.request_id, event.command_name,
                                        event.database_name, event.command))

    def succeeded(self, event):
        with self._lock:
            self.outcomes[event.request_id] = ("ok", event.reply)

    def failed(self, event):
        with self._lock:
            self.outcomes[event.request_id] = ("failed", event.failure)

    def names(self):
        with self._lock:
            return [name for _, name, _, _ in self.started_events]

    def expected_accounting(self, db):
        """{(db, collection, command, shape): {count, errors, docs, getmores}} as SPEC sections 3
        and 6 define them, from what the driver saw on database db."""
        with self._lock:
            events = list(self.started_events)
            outcomes = dict(self.outcomes)
        expected = {}
        cursors = {}  # cursor id -> shape key that opened it
        for request_id, name, dbname, cmd in events:
            if dbname != db:
                continue
            outcome, reply = outcomes[request_id]
            if name == "getMore":
                key = cursors[cmd["getMore"]]
                expected[key]["getmores"] += 1
            else:
                key = (dbname, collection_of(name, cmd), name, command_shape(name, cmd))
                entry = expected.setdefault(key, {"count": 0, "errors": 0, "docs": 0,
                                                  "getmores": 0})
                entry["count"] += 1
            entry = expected[key]
            if outcome == "failed" or reply.get("writeErrors"):
                entry["errors"] += 1
            if outcome != "ok":
                continue
            if name in WRITES:
                entry["docs"] += reply.get("n", 0)
            cursor = reply.get("cursor")
            if isinstance(cursor, dict):
                entry["docs"] += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))
                if cursor.get("id"):
                    cursors[cursor["id"]] = key
                elif name == "getMore":
                    cursors.pop(cmd["getMore"], None)
        return expected


# --- small helpers ------------------------------------------------------------------------------

def client_for(uri, **kwargs):
    kwargs.setdefault("serverSelectionTimeoutMS", 10000)
    return pymongo.MongoClient(uri, **kwargs)


def stats(tap, limit=1000):
    return tap.get_json("/api/stats?limit=%d" % limit)


def shapes_of(doc, db):
    out = {}
    for s in doc["shapes"]:
        if s["db"] == db:
            key = (s["db"], s["collection"], s["command"], s["shape"])
            assert key not in out, "shape listed twice: %r" % (key,)
            out[key] = s
    return out


def content_type(headers):
    return next((v for k, v in headers.items() if k.lower() == "content-type"), "")


def parse_iso(text):
    assert ISO_MS_RE.match(text), "not ISO-8601 with milliseconds and Z: %r" % text
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def check_entry_numbers(s, started_at, ended_at):
    """The per-shape invariants of SPEC section 6 that hold for any entry."""
    lat = s["latency_ms"]
    assert 0 <= lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], s
    assert lat["max"] <= lat["sum"] + 1e-9 and lat["sum"] > 0, s
    assert s["bytes_in"] > 0 and s["bytes_out"] > 0, s
    first, last = parse_iso(s["first_seen"]), parse_iso(s["last_seen"])
    assert started_at - 1 <= first <= last <= ended_at + 1, s


def raw_command(sock, doc, request_id):
    """One OP_MSG round trip on a raw socket: the reply document."""
    sock.sendall(wire.op_msg(doc, request_id=request_id))
    (_, _, response_to, opcode), body = helpers.read_message(sock)
    assert opcode == wire.OP_MSG and response_to == request_id
    return wire.reply_doc(body)


# --- 1. a PyMongo workload, shape by shape --------------------------------------------------------

def pymongo_workload(client, db):
    col = client[db]["people"]
    col.insert_one({"_id": 0, "name": "zero", "age": 0, "tags": ["t0", "all"]})
    col.insert_many([{"_id": i, "name": "p%d" % i, "age": i, "tags": ["t%d" % (i % 5), "all"]}
                     for i in range(1, 60)])
    for i in (3, 7, 11, 13):
        assert col.find_one({"_id": i})["age"] == i
    for n in (10, 30, 50):
        assert len(list(col.find({"age": {"$gt": n}}))) == 59 - n
    for tags in (["t1"], ["t1", "t2"], ["t1", "t2", "t3", "t4"]):
        assert len(list(col.find({"tags": {"$in": tags}}))) == 12 * len(tags)
    # a cursor that needs getMore round trips
    assert len(list(col.find({"age": {"$gte": 5, "$lt": 45}}, batch_size=4))) == 40
    groups = list(col.aggregate([{"$match": {"age": {"$lt": 30}}},
                                 {"$group": {"_id": "$name", "n": {"$sum": 1}}}]))
    assert len(groups) == 30
    assert len(list(col.aggregate([{"$match": {"age": {"$gte": 1}}}, {"$sort": {"_id": 1}}],
                                  batchSize=10))) == 59
    assert col.update_one({"_id": 1}, {"$set": {"name": "one"}}).matched_count == 1
    assert col.update_many({"age": {"$gt": 50}}, {"$inc": {"age": 100}}).matched_count == 9
    assert col.delete_one({"_id": 2}).deleted_count == 1
    assert col.count_documents({"age": {"$lt": 20}}) == 19
    assert col.count_documents({"age": {"$lt": 40}}) == 39
    # server errors: ok: 0 replies
    with pytest.raises(OperationFailure):
        list(col.aggregate([{"$match": {"age": 1}}, {"$bogusStage": {}}]))
    with pytest.raises(OperationFailure):
        list(col.find({"age": {"$notAnOperator": 1}}))
    with pytest.raises(DuplicateKeyError):
        col.insert_one({"_id": 3, "name": "again"})


def test_stats_match_what_pymongo_saw(mongotap, dbname):
    tap = mongotap("--window-gap-ms", "50")
    rec = Recorder()
    started_at = time.time()
    with client_for(tap.uri(dbname), event_listeners=[rec], appname="acct-workload") as client:
        # monitoring only: counted, but no window opens (stats are updated before the reply
        # is forwarded, so no waiting is needed to see it)
        client[dbname].command("ping")
        client[dbname].command("isMaster")
        client[dbname].command("hello")
        client[dbname].command("ping")
        before = stats(tap)
        assert before["windows"] == {"open": 0, "closed": 0, "commands_dropped": 0}, \
            before["windows"]
        assert before["commands"] >= 4

        pymongo_workload(client, dbname)
        assert rec.names().count("getMore") >= 9, rec.names()
        ended_at = time.time()

        poll("every request window to close",
             lambda: stats(tap, 1)["windows"]["open"] == 0, timeout=10)
        doc = stats(tap)
        windows = tap.get_json("/api/windows?limit=100")["windows"]

        expected = rec.expected_accounting(dbname)
        got = shapes_of(doc, dbname)

    # the shape strings of SPEC section 3, spelled out
    people = lambda cmd, shape: (dbname, "people", cmd, shape)  # noqa: E731
    grouped = people("aggregate", '[{"$match": {"age": {"$lt": "?"}}}, '
                                  '{"$group": {"_id": "?", "n": {"$sum": "?"}}}]')
    for key in (people("find", '{"_id": "?"}'), people("find", '{"age": {"$gt": "?"}}'),
                people("find", '{"tags": {"$in": ["?"]}}'), people("insert", "{}"),
                people("update", '{"q": {"_id": "?"}, "u": {"$set": {"name": "?"}}}'), grouped):
        assert key in expected, key
    assert expected[people("find", '{"_id": "?"}')]["count"] == 4
    assert expected[people("find", '{"age": {"$gt": "?"}}')]["count"] == 3
    assert expected[people("find", '{"tags": {"$in": ["?"]}}')]["count"] == 3
    # "$name" and 1 are both literals: the $group aggregate and both count_documents share a shape
    assert expected[grouped]["count"] == 3
    assert sum(e["errors"] for e in expected.values()) == 3

    assert sorted(got) == sorted(expected), (
        "only in /api/stats: %r\nonly seen by the driver: %r"
        % (sorted(set(got) - set(expected)), sorted(set(expected) - set(got))))
    for key, want in expected.items():
        s = got[key]
        assert (s["count"], s["errors"], s["docs_returned"]) == (
            want["count"], want["errors"], want["docs"]), (key, s, want)
        check_entry_numbers(s, started_at, ended_at)
        lat = s["latency_ms"]
        if want["count"] == 1 and want["getmores"] == 0:
            assert lat["min"] == lat["p50"] == lat["p99"] == lat["max"] == lat["sum"], (key, s)
        if want["count"] == 1 and want["getmores"]:
            # getMore time adds to the sum but is not a sample of its own
            assert lat["sum"] > lat["max"], (key, s)
    assert not [s for s in doc["shapes"] if s["command"] == "getMore"], doc["shapes"]
    assert doc["parse_errors"] == 0 and doc["upstream_errors"] == 0

    # windows: no monitoring command in any, and every other command in exactly one
    assert windows, "no request window was recorded"
    monitoring_names = {n for n in rec.names() if n.lower() in MONITORING}
    assert monitoring_names >= {"ping", "isMaster", "hello"}
    for w in windows:
        assert w["commands"], w
        assert all(c["command"].lower() not in MONITORING for c in w["commands"]), w
    in_windows = sum(w["total_commands"] for w in windows)
    assert in_windows == len([n for n in rec.names() if n.lower() not in MONITORING])


def test_getmore_on_another_connection_counts_for_the_find(mongotap, dbname):
    """Cursor ids belong to the server, not to a connection: a pooled driver sends a getMore on
    whichever connection is free. It is still part of the find that opened the cursor."""
    tap = mongotap()
    with helpers.raw_connect(tap.host, tap.port) as a, helpers.raw_connect(tap.host, tap.port) as b:
        raw_command(a, {"insert": "c", "documents": [{"_id": i} for i in range(10)],
                        "$db": dbname}, 1)
        reply = raw_command(a, {"find": "c", "filter": {"_id": {"$gte": 0}}, "batchSize": 2,
                                "$db": dbname}, 2)
        cursor_id = reply["cursor"]["id"]
        assert cursor_id
        more = raw_command(b, {"getMore": Int64(cursor_id), "collection": "c", "batchSize": 3,
                               "$db": dbname}, 3)
        assert len(more["cursor"]["nextBatch"]) == 3
        doc = stats(tap)
    got = shapes_of(doc, dbname)
    assert sorted(k[2] for k in got) == ["find", "insert"], sorted(got)
    find = got[(dbname, "c", "find", '{"_id": {"$gte": "?"}}')]
    assert (find["count"], find["docs_returned"]) == (1, 5), find


# --- 2. live connections ------------------------------------------------------------------------

def app_connections(tap, app):
    return [c for c in tap.get_json("/api/connections")["connections"] if c["app_name"] == app]


def test_connections_show_each_client_then_forget_it(mongotap, dbname):
    tap = mongotap()
    alpha = client_for(tap.uri(dbname), appname="acct-alpha")
    beta = client_for(tap.uri(dbname), appname="acct-beta")
    try:
        for i in range(3):
            alpha[dbname]["a"].find_one({"_id": i})
        for i in range(6):
            beta[dbname]["b"].find_one({"_id": i})
        conns = tap.get_json("/api/connections")["connections"]
        for c in conns:
            assert set(c) >= {"id", "client", "app_name", "driver", "commands", "window"}, c
            assert re.match(r"^127\.0\.0\.1:\d+$", c["client"]), c
        assert len({c["id"] for c in conns}) == len(conns)
        for app, ops in (("acct-alpha", 3), ("acct-beta", 6)):
            mine = [c for c in conns if c["app_name"] == app]
            assert mine, "no connection named %s in %r" % (app, conns)
            for c in mine:
                assert c["driver"].startswith("PyMongo 3.11"), c
            # the pool connection: its handshake plus one find per call
            assert any(c["commands"] == ops + 1 for c in mine), (app, mine)
            assert all(c["commands"] >= 1 for c in mine), mine
        assert stats(tap, 1)["connections"]["active"] == len(conns)
    finally:
        alpha.close()
        beta.close()
    poll("the closed clients to leave /api/connections",
         lambda: not app_connections(tap, "acct-alpha") and not app_connections(tap, "acct-beta"))
    assert stats(tap, 1)["connections"]["total"] >= 4


# --- 3. /api/stats as a whole, limit, errors, reset ---------------------------------------------

def test_stats_fields_limit_errors_and_reset(mongotap, dbname):
    tap = mongotap()
    status, headers, body = helpers.http_get(tap.admin_url + "/api/stats")
    assert status == 200 and content_type(headers).startswith("application/json")
    first = json.loads(body)
    for field, kind in (("uptime_s", (int, float)), ("connections", dict), ("commands", int),
                        ("ops_per_sec", (int, float)), ("parse_errors", int),
                        ("upstream_errors", int), ("shapes", list)):
        assert isinstance(first[field], kind), (field, first)
    assert set(first["connections"]) >= {"active", "total", "refused"}
    assert [first["connections"][k] for k in ("active", "total", "refused")] == [0, 0, 0]
    assert first["commands"] == 0 and first["shapes"] == []

    # no heartbeat during the test: two snapshots taken apart must agree
    client = client_for(tap.uri(dbname), heartbeatFrequencyMS=60000)
    col = client[dbname]["items"]
    col.insert_many([{"_id": i, "owner": i % 3, "size": i} for i in range(20)])
    stop = threading.Event()
    errors = []

    def workload():
        i = 0
        try:
            while not stop.is_set():
                col.find_one({"_id": i % 20})
                i += 1
        except Exception as e:  # reported by the test thread
            errors.append(e)

    worker = threading.Thread(target=workload, daemon=True)
    worker.start()
    try:
        def busy_stats():
            doc = stats(tap, 1)
            return doc if doc["ops_per_sec"] > 0 else None

        busy = poll("ops_per_sec > 0 while a workload runs", busy_stats, interval=0.1)
    finally:
        stop.set()
        worker.join(10)
    assert not errors, errors
    assert busy["uptime_s"] > 0 and busy["commands"] > 0
    assert busy["connections"]["active"] >= 1
    assert busy["connections"]["total"] >= busy["connections"]["active"]
    assert busy["connections"]["refused"] == 0
    assert busy["parse_errors"] == 0 and busy["upstream_errors"] == 0

    # a few more shapes, then ?limit
    list(col.find({"size": {"$gt": 3}}))
    list(col.find({"owner": 1, "size": {"$lt": 10}}))
    col.count_documents({})
    everything = stats(tap)["shapes"]
    assert len(everything) >= 4
    sums = [s["latency_ms"]["sum"] for s in everything]
    assert sums == sorted(sums, reverse=True), sums
    top = stats(tap, 2)["shapes"]
    assert top == everything[:2], (top, everything)
    assert len(stats(tap, 1)["shapes"]) == 1

    for bad in ("abc", "0", "-1", "2x", ""):
        status, headers, body = helpers.http_get(tap.admin_url + "/api/stats?limit=" + bad)
        assert status == 400, (bad, status, body)
        assert content_type(headers).startswith("application/json"), headers
        assert json.loads(body)["error"], body
    status, headers, body = helpers.http_get(tap.admin_url + "/api/no-such-route")
    assert status == 404 and json.loads(body)["error"], body
    assert content_type(headers).startswith("application/json"), headers

    # an N+1 window so that there is a finding to clear: one find of 20 documents, then
    # single-key lookups (default --n1-threshold 5, --window-gap-ms 100)
    assert len(list(col.find({}))) == 20
    for i in range(8):
        col.find_one({"_id": i})
    poll("an N+1 finding", lambda: tap.get_json("/api/findings")["findings"], timeout=10)
    client.close()  # no traffic may refill the stats after the reset

    status, _, body = tap.post("/api/reset")
    assert status == 200, body
    after = stats(tap)
    assert after["shapes"] == [] and after["commands"] == 0, after
    assert tap.get_json("/api/findings") == {"findings": [], "patterns": []}
    assert tap.get_json("/api/windows")["windows"] == []
    status, _, _ = helpers.http_get(tap.admin_url + "/api/reset")
    assert status == 405


# --- 4. --max-shapes ------------------------------------------------------------------------------

def test_max_shapes_folds_the_rest_into_other(mongotap, dbname):
    tap = mongotap("--max-shapes", "5")
    with helpers.raw_connect(tap.host, tap.port) as s:
        rid = 1
        for i in list(range(20)) + [0, 10]:
            reply = raw_command(s, {"find": "c", "filter": {"f%d" % i: i}, "$db": dbname}, rid)
            assert reply["ok"] == 1.0, reply
            rid += 1
        doc = stats(tap)
    shapes = doc["shapes"]
    assert len(shapes) == 6, shapes
    assert doc["shapes_tracked"] == 6
    other = [s for s in shapes if s["shape"] == "<other>"]
    assert len(other) == 1, shapes
    named = {s["shape"]: s["count"] for s in shapes if s["shape"] != "<other>"}
    # the first five shapes seen keep their own entries; f0 was sent twice
    assert named == {'{"f0": "?"}': 2, '{"f1": "?"}': 1, '{"f2": "?"}': 1, '{"f3": "?"}': 1,
                     '{"f4": "?"}': 1}, named
    for s in shapes:
        if s["shape"] != "<other>":
            assert (s["db"], s["collection"], s["command"]) == (dbname, "c", "find"), s
    assert other[0]["count"] == 16 == doc["commands"] - sum(named.values())
    assert other[0]["errors"] == 0 and other[0]["bytes_in"] > 0


# --- 5. the Node.js driver ----------------------------------------------------------------------

def test_node_driver_named_in_connections(mongotap, dbname):
    tap = mongotap()
    proc = subprocess.Popen(["node", "acct_driver.mjs", tap.uri(dbname), dbname],
                            cwd=helpers.NODE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("acct_driver.mjs printed nothing; stderr:\n%s"
                                 % proc.communicate(timeout=10)[1])
        out = json.loads(line)
        assert out == {"ready": True, "inserted": 1, "byId": 1, "cheap": 1}, out
        mine = app_connections(tap, "acct-node")
        assert mine, tap.get_json("/api/connections")
        for c in mine:
            assert "nodejs" in (c["driver"] or ""), c
        assert sum(c["commands"] for c in mine) >= 4
        got = shapes_of(stats(tap), dbname)
        assert got[(dbname, "gadgets", "insert", "{}")]["docs_returned"] == 1
        assert got[(dbname, "gadgets", "find", '{"_id": "?"}')]["count"] == 1
        assert got[(dbname, "gadgets", "find", '{"price": {"$lt": "?"}}')]["docs_returned"] == 1
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    poll("the Node.js connections to close", lambda: not app_connections(tap, "acct-node"))


# --- 6. a hand-written upstream: compression, writeErrors, moreToCome streams --------------------

FLAG_MORE_TO_COME = 1 << 1
FLAG_EXHAUST_ALLOWED = 1 << 16
COMPRESSORS = {"noop": wire.COMPRESSOR_NOOP, "zlib": wire.COMPRESSOR_ZLIB}


def compress(msg, compressor):
    """msg (a whole message) wrapped in OP_COMPRESSED, keeping its requestID and responseTo."""
    _, request_id, response_to, opcode = struct.unpack_from("<iiii", msg)
    body = msg[16:]
    payload = zlib.compress(body) if compressor == wire.COMPRESSOR_ZLIB else body
    inner = struct.pack("<iiB", opcode, len(body), compressor) + payload
    return wire.header(16 + len(inner), request_id, response_to, wire.OP_COMPRESSED) + inner


def op_msg_reply(doc, request_id, response_to, flags=0):
    body = struct.pack("<I", flags) + b"\x00" + bson.BSON.encode(doc)
    return wire.header(16 + len(body), request_id, response_to, wire.OP_MSG) + body


def op_reply(doc, request_id, response_to):
    body = struct.pack("<iqii", 0, 0, 0, 1) + bson.BSON.encode(doc)
    return wire.header(16 + len(body), request_id, response_to, wire.OP_REPLY) + body


def parse_op_msg(body):
    """(flags, command document with kind-1 sequences merged in)."""
    flags = struct.unpack_from("<I", body)[0]
    pos, end = 4, len(body) - (4 if flags & 1 else 0)
    cmd, seqs = None, {}
    while pos < end:
        kind = body[pos]
        pos += 1
        if kind == 0:
            size = struct.unpack_from("<i", body, pos)[0]
            cmd = bson.BSON(body[pos:pos + size]).decode(
                codec_options=bson.CodecOptions(document_class=SON))
            pos += size
        else:
            size = struct.unpack_from("<i", body, pos)[0]
            section = body[pos + 4:pos + size]
            ident, docs = section.split(b"\x00", 1)
            seqs[ident.decode()] = bson.decode_all(docs)
            pos += size
    for ident, docs in seqs.items():
        cmd[ident] = docs
    return flags, cmd


class FakeUpstream:
    """A small MongoDB-speaking server on 127.0.0.1: the legacy OP_QUERY handshake, hello (with
    zlib/noop compression when offered, and a moreToCome stream for an awaitable hello), ping,
    find and getMore over `docs` (an exhaust getMore streams every remaining batch), insert
    (a writeError for each document whose _id is "dup"). Replies to compressed requests are
    compressed the same way, as mongod does. Records what it received and every byte it sent,
    per connection."""

    HELLO = {"ismaster": True, "maxWireVersion": 8, "minWireVersion": 0,
             "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000,
             "maxWriteBatchSize": 100000}

    def __init__(self, docs):
        self.docs = docs
        self.received = []   # (connection index, wire opcode, compressor or None, command, flags)
        self.sent = []       # per connection: bytearray of everything sent
        self._lock = threading.Lock()
        self._next_id = 5000
        self._conns = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._listener.close()
        for c in list(self._conns):
            try:
                c.close()
            except OSError:
                pass

    def commands(self, name):
        with self._lock:
            return [r for r in self.received if r[3] and next(iter(r[3])).lower() == name]

    def _accept(self):
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn, index, msg):
        with self._lock:
            self.sent[index] += msg
        conn.sendall(msg)

    def _reply_id(self):
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _serve(self, conn):
        reader = wire.MessageReader(conn)
        cursors = {}
        index = None
        with conn:
            while True:
                try:
                    got = reader.read()
                except (wire.Truncated, OSError):
                    return
                if got is None:
                    return
                (_, request_id, _, opcode), body = got
                if index is None and helpers.MONITOR_MARK in body:
                    # mongotap's upstream monitor: answered, never recorded
                    index = -1
                if index == -1:
                    conn.sendall(op_msg_reply(dict(self.HELLO, ok=1.0), self._reply_id(),
                                              request_id))
                    continue
                if index is None:
                    with self._lock:
                        index = len(self.sent)
                        self.sent.append(bytearray())
                compressor = None
                if opcode == wire.OP_COMPRESSED:
                    opcode, size, compressor = struct.unpack_from("<iiB", body)
                    body = body[9:]
                    if compressor == wire.COMPRESSOR_ZLIB:
                        body = zlib.decompress(body)
                    assert len(body) == size
                try:
                    self._answer(conn, index, request_id, opcode, compressor, body, cursors)
                except OSError:
                    return

    def _answer(self, conn, index, request_id, opcode, compressor, body, cursors):
        if opcode == wire.OP_QUERY:
            ns_end = body.index(b"\x00", 4)
            cmd = bson.BSON(body[ns_end + 9:]).decode(
                codec_options=bson.CodecOptions(document_class=SON))
            with self._lock:
                self.received.append((index, wire.OP_QUERY, compressor, cmd, 0))
            self._send(conn, index, op_reply(self._hello(cmd), self._reply_id(), request_id))
            return
        flags, cmd = parse_op_msg(body)
        with self._lock:
            self.received.append((index, wire.OP_COMPRESSED if compressor is not None
                                  else wire.OP_MSG, compressor, cmd, flags))
        name = next(iter(cmd)).lower()
        if flags & FLAG_MORE_TO_COME:
            return  # the client expects no reply
        replies = []  # documents to send, in order; all but the last with moreToCome
        if name in ("hello", "ismaster"):
            replies = [self._hello(cmd)]
            if flags & FLAG_EXHAUST_ALLOWED and "topologyVersion" in cmd:
                replies = [dict(self._hello(cmd), n=i) for i in range(3)]
        elif name in ("ping", "endsessions"):
            replies = [{"ok": 1.0}]
        elif name == "find":
            size = cmd.get("batchSize") or len(self.docs)
            first, rest = self.docs[:size], self.docs[size:]
            cursor_id = 77 if rest else 0
            if rest:
                cursors[cursor_id] = rest
            ns = "%s.%s" % (cmd["$db"], cmd["find"])
            replies = [{"cursor": {"id": Int64(cursor_id), "ns": ns, "firstBatch": first},
                        "ok": 1.0}]
        elif name == "getmore":
            rest = cursors.pop(cmd["getMore"], [])
            size = cmd.get("batchSize") or len(rest) or 1
            ns = "%s.%s" % (cmd["$db"], cmd["collection"])
            while True:
                batch, rest = rest[:size], rest[size:]
                replies.append({"cursor": {"id": Int64(77 if rest else 0), "ns": ns,
                                           "nextBatch": batch}, "ok": 1.0})
                if not rest:
                    break
                if not flags & FLAG_EXHAUST_ALLOWED:
                    cursors[cmd["getMore"]] = rest
                    break
        elif name == "insert":
            docs = cmd.get("documents", [])
            errors = [{"index": i, "code": 11000, "errmsg": "E11000 duplicate key"}
                      for i, d in enumerate(docs) if d.get("_id") == "dup"]
            reply = {"n": len(docs) - len(errors), "ok": 1.0}
            if errors:
                reply["writeErrors"] = errors
            replies = [reply]
        else:
            replies = [{"ok": 0.0, "errmsg": "no such command", "code": 59,
                        "codeName": "CommandNotFound"}]
        respond_to = request_id
        for i, doc in enumerate(replies):
            reply_id = self._reply_id()
            msg = op_msg_reply(doc, reply_id, respond_to,
                               FLAG_MORE_TO_COME if i < len(replies) - 1 else 0)
            if compressor is not None and name not in ("hello", "ismaster"):
                msg = compress(msg, compressor)
            self._send(conn, index, msg)
            respond_to = reply_id  # the next reply of a stream answers this one

    def _hello(self, cmd):
        doc = dict(self.HELLO, ok=1.0)
        offered = [c for c in cmd.get("compression", []) if c in COMPRESSORS]
        if offered:
            doc["compression"] = offered
        return doc


@pytest.fixture
def fake_upstream():
    docs = [{"_id": i, "name": "n%d" % i, "qty": i} for i in range(7)]
    server = FakeUpstream(docs)
    yield server
    server.close()


def test_pymongo_zlib_compression_and_write_errors(mongotap, fake_upstream, dbname):
    tap = mongotap(upstream=fake_upstream.address)
    with client_for(tap.uri(dbname), compressors="zlib") as client:
        col = client[dbname]["things"]
        for qty in (1, 2, 3):
            assert len(list(col.find({"name": "n%d" % qty, "qty": {"$gte": qty}}))) == 7
        assert len(list(col.find({"qty": {"$lt": 100}}, batch_size=2))) == 7  # 3 getMores
        col.insert_one({"_id": "fine"})
        with pytest.raises(DuplicateKeyError):
            col.insert_one({"_id": "dup"})
        doc = stats(tap)
    finds = fake_upstream.commands("find") + fake_upstream.commands("getmore")
    inserts = fake_upstream.commands("insert")
    assert len(finds) == 7 and len(inserts) == 2
    assert all(r[1] == wire.OP_COMPRESSED and r[2] == wire.COMPRESSOR_ZLIB
               for r in finds + inserts), [r[:3] for r in finds + inserts]

    got = shapes_of(doc, dbname)
    things = lambda cmd, shape: (dbname, "things", cmd, shape)  # noqa: E731
    want = {
        things("find", '{"name": "?", "qty": {"$gte": "?"}}'): (3, 0, 21),
        things("find", '{"qty": {"$lt": "?"}}'): (1, 0, 7),
        things("insert", "{}"): (2, 1, 1),
    }
    assert sorted(got) == sorted(want), sorted(got)
    for key, (count, errors, docs) in want.items():
        s = got[key]
        assert (s["count"], s["errors"], s["docs_returned"]) == (count, errors, docs), s
    assert doc["parse_errors"] == 0, doc


def unacknowledged_compressed_insert(tap, fake_upstream, dbname):
    """A w:0 insert from PyMongo over zlib: OP_COMPRESSED around an OP_MSG with moreToCome."""
    client = client_for(tap.uri(dbname), compressors="zlib", w=0)
    client[dbname]["quiet"].insert_one({"_id": "hush"})
    inserts = poll("the insert to reach the upstream", lambda: fake_upstream.commands("insert"))
    assert [(r[1], r[2], bool(r[4] & FLAG_MORE_TO_COME)) for r in inserts] == [
        (wire.OP_COMPRESSED, wire.COMPRESSOR_ZLIB, True)], inserts
    return client


def test_compressed_unacknowledged_write_accounted(mongotap, fake_upstream, dbname):
    tap = mongotap(upstream=fake_upstream.address)
    client = unacknowledged_compressed_insert(tap, fake_upstream, dbname)
    try:
        doc = stats(tap)
    finally:
        client.close()
    s = shapes_of(doc, dbname)[(dbname, "quiet", "insert", "{}")]
    assert (s["count"], s["errors"], s["docs_returned"]) == (1, 0, 0), s
    assert s["bytes_in"] > 0 and s["bytes_out"] == 0, s
    assert doc["pending_requests"] == 0 and doc["parse_errors"] == 0, doc


def test_compressed_unacknowledged_write_does_not_hold_shutdown(mongotap, fake_upstream, dbname):
    # a raw client: PyMongo would hang up by itself once its monitor connection is closed
    tap = mongotap(upstream=fake_upstream.address)
    with helpers.raw_connect(tap.host, tap.port) as s:
        raw_command(s, {"ping": 1, "$db": "admin"}, 1)
        msg = wire.op_msg({"insert": "quiet", "documents": [{"_id": 1}], "writeConcern": {"w": 0},
                           "$db": dbname}, request_id=2, flags=FLAG_MORE_TO_COME)
        s.sendall(compress(msg, wire.COMPRESSOR_ZLIB))
        poll("the insert to reach the upstream", lambda: fake_upstream.commands("insert"))
        assert stats(tap)["pending_requests"] == 0
        started = time.monotonic()
        assert tap.stop(signal.SIGTERM) == 0
        took = time.monotonic() - started
    assert "in-flight reply not finished" not in tap.logs()
    assert took < 2.5, "SIGTERM took %.1fs with nothing in flight" % took


def test_hand_built_compressed_messages(mongotap, fake_upstream, dbname):
    tap = mongotap(upstream=fake_upstream.address)
    cases = [(wire.COMPRESSOR_ZLIB, {"name": "x", "qty": {"$in": [1, 2, 3]}}),
             (wire.COMPRESSOR_ZLIB, {"name": "y", "qty": {"$in": [4]}}),
             (wire.COMPRESSOR_NOOP, {"name": "z", "qty": {"$in": [5, 6]}})]
    with helpers.raw_connect(tap.host, tap.port) as s:
        reader = wire.MessageReader(s)
        for rid, (compressor, filt) in enumerate(cases, start=1):
            s.sendall(compress(wire.op_msg({"find": "raw", "filter": filt, "$db": dbname},
                                           request_id=rid), compressor))
            (_, _, response_to, opcode), body = reader.read()
            assert (response_to, opcode) == (rid, wire.OP_COMPRESSED)
            inner_opcode, size, used = struct.unpack_from("<iiB", body)
            assert (inner_opcode, used) == (wire.OP_MSG, compressor)
            inner = body[9:] if used == wire.COMPRESSOR_NOOP else zlib.decompress(body[9:])
            assert len(inner) == size
            assert len(wire.reply_doc(inner)["cursor"]["firstBatch"]) == 7
        doc = stats(tap)
    assert [r[2] for r in fake_upstream.commands("find")] == [c for c, _ in cases]
    got = shapes_of(doc, dbname)
    key = (dbname, "raw", "find", '{"name": "?", "qty": {"$in": ["?"]}}')
    assert list(got) == [key], got
    assert (got[key]["count"], got[key]["errors"], got[key]["docs_returned"]) == (3, 0, 21)
    assert doc["parse_errors"] == 0 and doc["commands"] == 3, doc


def inner_body(opcode, body):
    """(opcode, body) of the message itself, unwrapping OP_COMPRESSED."""
    if opcode != wire.OP_COMPRESSED:
        return opcode, body
    inner_opcode, size, compressor = struct.unpack_from("<iiB", body)
    inner = zlib.decompress(body[9:]) if compressor == wire.COMPRESSOR_ZLIB else body[9:]
    assert len(inner) == size
    return inner_opcode, inner


def read_stream(reader):
    """Replies until one without moreToCome: [(header, body as sent)]."""
    out = []
    while True:
        (length, request_id, response_to, opcode), body = reader.read()
        out.append(((length, request_id, response_to, opcode), body))
        opcode, body = inner_body(opcode, body)
        if opcode != wire.OP_MSG or not struct.unpack_from("<I", body)[0] & FLAG_MORE_TO_COME:
            return out


def stream_docs(replies):
    return [wire.reply_doc(inner_body(h[3], body)[1]) for h, body in replies]


def raw_bytes(replies):
    return b"".join(struct.pack("<iiii", *h) + body for h, body in replies)


@pytest.mark.parametrize("compressor", [None, wire.COMPRESSOR_ZLIB], ids=["plain", "zlib"])
def test_exhaust_streams_forwarded_whole_and_counted_once(mongotap, fake_upstream, dbname,
                                                          compressor):
    tap = mongotap(upstream=fake_upstream.address)

    def send(sock, doc, request_id, flags=0):
        msg = wire.op_msg(doc, request_id=request_id, flags=flags)
        sock.sendall(compress(msg, compressor) if compressor is not None else msg)

    with helpers.raw_connect(tap.host, tap.port) as s:
        reader = wire.MessageReader(s)
        send(s, {"find": "ex", "filter": {"qty": {"$gte": 0}}, "batchSize": 2, "$db": dbname}, 1)
        received = read_stream(reader)
        assert stream_docs(received)[0]["cursor"]["id"] == 77
        send(s, {"getMore": Int64(77), "collection": "ex", "batchSize": 2, "$db": dbname}, 2,
             FLAG_EXHAUST_ALLOWED)
        stream = read_stream(reader)
        # an awaitable hello streamed the same way (what 4.4+ drivers monitor with)
        send(s, {"hello": 1, "topologyVersion": {"processId": bson.ObjectId(), "counter": Int64(0)},
                 "maxAwaitTimeMS": 10, "$db": "admin"}, 3, FLAG_EXHAUST_ALLOWED)
        hellos = read_stream(reader)
        doc = stats(tap)
    wrapped = wire.OP_MSG if compressor is None else wire.OP_COMPRESSED
    assert [h[3] for h, _ in received + stream] == [wrapped] * 4
    assert [len(d["cursor"]["nextBatch"]) for d in stream_docs(stream)] == [2, 2, 1]
    assert [h[2] for h, _ in stream] == [2, stream[0][0][1], stream[1][0][1]]
    assert len(hellos) == 3
    with fake_upstream._lock:
        sent = bytes(fake_upstream.sent[0])
    assert raw_bytes(received + stream + hellos) == sent

    got = shapes_of(doc, dbname)
    key = (dbname, "ex", "find", '{"qty": {"$gte": "?"}}')
    assert list(got) == [key], got
    assert (got[key]["count"], got[key]["errors"], got[key]["docs_returned"]) == (1, 0, 7)
    hello = [s for s in doc["shapes"] if s["command"] == "hello"]
    assert len(hello) == 1 and hello[0]["count"] == 1 and hello[0]["errors"] == 0, hello
    # find, getMore and hello: three requests, however many replies
    assert doc["commands"] == 3 and doc["parse_errors"] == 0, doc
    assert doc["pending_requests"] == 0 and doc["replies_unmatched"] == 0, doc
