"""Hostile input: every kind of malformed message a client can send, one per connection, while
a well-behaved PyMongo client runs beside them. Only the offending connection may suffer (closed,
or answered by the server); the proxy never crashes, its counters show what it saw, and the
well-behaved client gets correct answers throughout."""

import functools
import random
import shutil
import struct
import subprocess
import threading
import zlib

import bson
import pymongo
import pytest
from pymongo.errors import PyMongoError

import helpers
from faults import procinfo, wire
from faults.relay import RecordingRelay


GOOD_APP = "good-client"


class GoodClient(threading.Thread):
    """A PyMongo client doing verified round trips until stopped."""

    def __init__(self, uri, dbname):
        super().__init__(daemon=True, name="good-client")
        self.uri, self.dbname = uri, dbname
        self.rounds = 0
        self.errors = []
        self.stop_event = threading.Event()
        self.cond = threading.Condition()

    def run(self):
        try:
            with pymongo.MongoClient(self.uri, maxPoolSize=2, serverSelectionTimeoutMS=10000,
                                     appname=GOOD_APP) as c:
                col = c[self.dbname]["good"]
                col.insert_many([{"_id": i, "sq": i * i} for i in range(100)])
                i = 0
                while not self.stop_event.is_set():
                    i += 1
                    k = i % 100
                    if col.find_one({"_id": k}) != {"_id": k, "sq": k * k}:
                        self.errors.append("round %d: wrong find_one" % i)
                    got = [d["_id"] for d in col.find({"_id": {"$lt": 30}}, batch_size=7)
                           .sort("_id", 1)]
                    if got != list(range(30)):
                        self.errors.append("round %d: wrong cursor %r" % (i, got[:5]))
                    with self.cond:
                        self.rounds += 1
                        self.cond.notify_all()
        except PyMongoError as e:
            self.errors.append(repr(e))
        with self.cond:
            self.cond.notify_all()

    def wait_rounds(self, n, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.rounds >= n or self.errors or
                                      not self.is_alive(), timeout)


def _find(dbname, filter_doc, rid=1):
    return wire.op_msg({"find": "hostile", "filter": filter_doc, "$db": dbname}, request_id=rid)


DB = "rel_hostile"
MUTATIONS = 1200


@functools.lru_cache(maxsize=1)
def hostile_inputs(dbname=DB):
    """[(name, bytes, how the client ends, expected class)]. Classes: "header" (an impossible
    length: the proxy must close the connection itself and count a protocol error), "parse"
    (forwarded whole, must count as a parse error), "opcode" (forwarded, counted as an unknown
    opcode), "any" (whatever the server makes of it; the proxy just survives)."""
    rng = random.Random(20261125)
    db = dbname.encode()
    good = _find(dbname, {"name": "x"})
    out = []

    # random garbage, of many sizes
    for i, n in enumerate([1, 3, 15, 16, 17, 40, 100, 512, 4096, 20000]):
        out.append(("garbage-%d-bytes" % n, wire.random_bytes(rng, n), "shutdown", "any"))
    # a valid header cut short, then closed (FIN) or reset
    for n in range(1, 16):
        out.append(("header-cut-at-%d" % n, good[:n], "close" if n % 2 else "reset", "any"))
    # impossible lengths: the framer must refuse them before forwarding a byte
    for length in (-1, -16, -(2 ** 31), 0, 8, 15, 48_000_001, 2 ** 31 - 1):
        out.append(("length-%d" % length, wire.header(length) + b"\0" * 32, "shutdown", "header"))
    # a possible but huge length, then the client gives up
    out.append(("length-48000000-then-close", wire.header(48_000_000) + b"\0" * 1000, "close",
                "any"))

    # OP_COMPRESSED bombs and lies
    zeros_48m = wire.zlib_of_zeros(48_000_000)
    out += [
        ("zlib-bomb-48000000", wire.op_compressed(wire.OP_MSG, 48_000_000, wire.COMPRESSOR_ZLIB,
                                                  zeros_48m), "shutdown", "parse"),
        ("zlib-declared-48000001", wire.op_compressed(wire.OP_MSG, 48_000_001,
                                                      wire.COMPRESSOR_ZLIB, zlib.compress(b"x")),
         "shutdown", "parse"),
        ("zlib-declared-48000000-tiny", wire.op_compressed(
            wire.OP_MSG, 48_000_000, wire.COMPRESSOR_ZLIB, zlib.compress(b"\0" * 10)),
         "shutdown", "parse"),
        ("zlib-inflates-past-declared", wire.op_compressed(
            wire.OP_MSG, 1000, wire.COMPRESSOR_ZLIB, wire.zlib_of_zeros(64_000_000)),
         "shutdown", "parse"),
        ("zlib-declared-negative", wire.op_compressed(wire.OP_MSG, -5, wire.COMPRESSOR_ZLIB,
                                                      zlib.compress(b"abc")), "shutdown", "parse"),
        ("zlib-corrupt-stream", wire.op_compressed(wire.OP_MSG, 100, wire.COMPRESSOR_ZLIB,
                                                   b"\x78\x9c" + b"\xff" * 40),
         "shutdown", "parse"),
        ("snappy-declared-48000001", wire.op_compressed(
            wire.OP_MSG, 48_000_001, wire.COMPRESSOR_SNAPPY,
            wire.snappy_varint(48_000_001) + wire.snappy_literal(b"x")), "shutdown", "parse"),
        ("snappy-varint-4g", wire.op_compressed(
            wire.OP_MSG, 64, wire.COMPRESSOR_SNAPPY,
            wire.snappy_varint(2 ** 32 - 1) + wire.snappy_literal(b"x")), "shutdown", "parse"),
        ("snappy-copy-before-start", wire.op_compressed(
            wire.OP_MSG, 64, wire.COMPRESSOR_SNAPPY,
            wire.snappy_varint(64) + b"\x02\x40\x00"), "shutdown", "parse"),
        ("noop-declared-larger", wire.op_compressed(wire.OP_MSG, 4096, wire.COMPRESSOR_NOOP,
                                                    good[16:]), "shutdown", "parse"),
        ("compressor-id-99", wire.op_compressed(wire.OP_MSG, 10, 99, b"\0" * 10), "shutdown",
         "parse"),
        ("compressed-inside-compressed", wire.op_compressed(
            wire.OP_COMPRESSED, 30, wire.COMPRESSOR_NOOP,
            struct.pack("<iiB", wire.OP_MSG, 10, 0) + b"\0" * 21), "shutdown", "parse"),
        ("compressed-body-short", wire.message(wire.OP_COMPRESSED, b"\xdd\x07"), "shutdown",
         "parse"),
    ]
    zstd = shutil.which("zstd")
    if zstd:
        frame = subprocess.run([zstd, "-q", "-c"], input=b"\0" * 32_000_000,
                               stdout=subprocess.PIPE, check=True).stdout
        out.append(("zstd-inflates-past-declared", wire.op_compressed(
            wire.OP_MSG, 1000, wire.COMPRESSOR_ZSTD, frame), "shutdown", "parse"))
        out.append(("zstd-declared-48000001", wire.op_compressed(
            wire.OP_MSG, 48_000_001, wire.COMPRESSOR_ZSTD, frame), "shutdown", "parse"))

    # BSON a driver would never send
    for depth in (10_000, 100_000):
        out.append(("bson-nested-%d" % depth,
                    wire.op_msg(wire.find_command(b"hostile", wire.deep_doc(depth), db)),
                    "shutdown", "any"))
    out.append(("bson-array-nested-10000", wire.op_msg(wire.find_command(
        b"hostile", _deep_array(10_000), db)), "shutdown", "any"))
    out.append(("utf8-invalid-value", wire.op_msg(wire.find_command(
        b"hostile", wire.bson_raw([wire.el_str(b"name", b"\xff\xfe\xc3\x28")]), db)),
        "shutdown", "any"))
    out.append(("utf8-invalid-key", wire.op_msg(wire.find_command(
        b"hostile", wire.bson_raw([wire.el_str(b"\xc3\x28bad\xff", b"v")]), db)),
        "shutdown", "any"))
    out.append(("utf8-invalid-collection", wire.op_msg(wire.find_command(
        b"\xed\xa0\x80", wire.bson_raw([]), db)), "shutdown", "any"))
    out.append(("utf8-overlong-nul", wire.op_msg(wire.find_command(
        b"hostile", wire.bson_raw([wire.el_str(b"name", b"a\xc0\x80b")]), db)),
        "shutdown", "any"))
    out.append(("bson-length-past-end", wire.op_msg_sections(
        [b"\x00" + struct.pack("<i", 5000) + b"\x10a\x00\x01\x00\x00\x00\x00"]), "shutdown",
        "parse"))
    out.append(("bson-length-negative", wire.op_msg_sections(
        [b"\x00" + struct.pack("<i", -7) + b"\x00" * 8]), "shutdown", "parse"))
    out.append(("bson-no-terminator", wire.op_msg_sections(
        [b"\x00" + struct.pack("<i", 12) + b"\x10a\x00\x01\x00\x00\x00\x01"]), "shutdown",
        "parse"))
    out.append(("bson-unknown-type", wire.op_msg_sections(
        [b"\x00" + wire.bson_raw([b"\x77find\x00abcd"])]), "shutdown", "parse"))
    out.append(("bson-string-length-huge", wire.op_msg_sections(
        [b"\x00" + wire.bson_raw([b"\x02find\x00" + struct.pack("<i", 0x7FFFFFF0) + b"c\x00"])]),
        "shutdown", "parse"))

    # OP_MSG structure
    out.append(("section-kind-7", wire.op_msg_sections(
        [b"\x07" + bson.BSON.encode({"find": "hostile", "$db": dbname})]), "shutdown", "parse"))
    out.append(("section-kind-1-size-past-end", wire.op_msg_sections(
        [b"\x00" + bson.BSON.encode({"insert": "hostile", "$db": dbname}),
         b"\x01" + struct.pack("<i", 100000) + b"documents\x00"]), "shutdown", "parse"))
    out.append(("section-kind-1-no-identifier-end", wire.op_msg_sections(
        [b"\x00" + bson.BSON.encode({"insert": "hostile", "$db": dbname}),
         b"\x01" + struct.pack("<i", 12) + b"documentsXX"]), "shutdown", "parse"))
    out.append(("section-kind-1-only", wire.op_msg_sections(
        [wire.kind1_section(b"documents", [{"_id": 1}])]), "shutdown", "parse"))
    out.append(("op-msg-no-sections", wire.op_msg_sections([]), "shutdown", "parse"))
    out.append(("op-msg-checksum-flag-no-checksum", wire.op_msg(
        {"ping": 1, "$db": "admin"}, flags=1), "shutdown", "any"))
    out.append(("op-msg-unknown-required-flag", wire.op_msg({"ping": 1, "$db": "admin"},
                                                           flags=1 << 5), "shutdown", "any"))
    for i in range(10):
        body = wire.random_bytes(rng, rng.choice([1, 5, 64, 300, 3000]))
        out.append(("random-body-%d" % i, wire.message(wire.OP_MSG, body), "shutdown", "parse"))
    for opcode in (9999, 0, -1, 2010, 2011, 1):
        out.append(("opcode-%d" % opcode, wire.message(opcode, b"\0" * 24), "shutdown",
                    "opcode" if opcode in (9999, 0, -1, 2010, 2011) else "any"))
    out.append(("op-query-cut-collection", wire.message(
        wire.OP_QUERY, struct.pack("<i", 0) + b"admin.$cmd"), "shutdown", "parse"))
    out.append(("op-query-no-doc", wire.message(
        wire.OP_QUERY, struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1)),
        "shutdown", "parse"))

    # two good messages and a bad one on one connection
    out.append(("good-good-impossible", good + good + wire.header(7), "shutdown", "header"))

    # random corruptions of real messages, with the length fixed up so they reach the parser
    seeds = [
        good,
        _find(dbname, {"a": {"$in": [1, 2, 3]}, "b": {"$elemMatch": {"c": {"$gt": 4}}}}),
        wire.op_msg({"insert": "hostile", "documents": [{"_id": 1, "x": [1, {"y": "z"}]}],
                     "ordered": True, "$db": dbname}),
        wire.op_msg({"aggregate": "hostile", "pipeline": [{"$match": {"a": 1}},
                                                          {"$group": {"_id": "$b"}}],
                     "cursor": {}, "$db": dbname}),
        wire.op_msg_sections([b"\x00" + bson.BSON.encode({"insert": "hostile", "$db": dbname}),
                              wire.kind1_section(b"documents", [{"_id": 2}, {"_id": 3}])]),
        wire.op_query("admin.$cmd", {"isMaster": 1, "client": {"driver": {"name": "x"}}}),
        wire.op_compressed(wire.OP_MSG, len(good) - 16, wire.COMPRESSOR_ZLIB,
                           zlib.compress(good[16:])),
    ]
    for i in range(MUTATIONS):
        out.append(("mutation-%d" % i, wire.mutate(rng, rng.choice(seeds)), "shutdown", "any"))
    return out


def _deep_array(depth):
    doc = wire.bson_raw([])
    for _ in range(depth):
        doc = wire.bson_raw([b"\x04" + b"0\x00" + doc])
    return wire.bson_raw([wire.el_doc(b"a", doc)])


def assert_whole_replies(sent, reply, name):
    """Before closing for an impossible header, the proxy may pass on replies to the whole
    messages ahead of it, but only whole replies, and never more than those messages."""
    walk = wire.frame_walk(reply)
    assert all(w[0] == "ok" for w in walk), "%s: partial reply %r" % (name, walk)
    ahead = sum(1 for w in wire.frame_walk(sent) if w[0] == "ok")
    assert len(walk) <= ahead, "%s: %d replies to %d messages" % (name, len(walk), ahead)


def forwardable(data):
    """What of data the upstream may receive: whole messages up to an impossible header (never
    that header), and of a last incomplete message everything once its header is whole."""
    off = 0
    while len(data) - off >= 16:
        length = struct.unpack_from("<i", data, off)[0]
        if length < 16 or length > wire.MAX_MESSAGE:
            return data[:off]
        if off + length > len(data):
            return data
        off += length
    return data[:off]


def check_upstream_saw(conns, inputs, exclude):
    """Every upstream connection carried a prefix of what its input may forward, never an
    impossible header, never a partial header; when the proxy passed on the client's
    half-close, the upstream got exactly what may be forwarded. Returns the count checked."""
    by_head = {}
    for name, data, end, _ in inputs:
        fwd = forwardable(data)
        by_head.setdefault(fwd[:16], []).append((name, fwd, end))
    checked = 0
    problems = []
    for c in conns:
        up = bytes(c.c2s)
        if exclude(up):
            continue
        checked += 1
        walk = wire.frame_walk(up)
        if walk and walk[-1][0] == "impossible":
            problems.append("%r: the upstream got an impossible header" % c)
            continue
        if 0 < len(up) < 16:
            problems.append("%r: the upstream got %d bytes of a header" % (c, len(up)))
            continue
        if not up:
            continue
        candidates = by_head.get(up[:16], [])
        if not any(fwd.startswith(up) for _, fwd, _ in candidates):
            problems.append("%r: bytes that no input sent (%r...)" % (c, up[:24]))
        elif c.c2s_end == "eof" and not any(fwd == up for _, fwd, end in candidates
                                            if end != "reset"):
            problems.append("%r: half-closed before all of its input was forwarded" % c)
    assert not problems, "\n".join(problems[:10])
    return checked


def expected_counts(inputs):
    """Bounds the proxy's counters must meet: protocol errors from the framer's point of view
    (every input holding an impossible header), and the least number of whole messages that
    must count as parse errors or unknown opcodes."""
    impossible = 0
    for _, data, _, _ in inputs:
        walk = wire.frame_walk(data)
        if walk and walk[-1][0] == "impossible":
            impossible += 1
    must_parse = sum(1 for i in inputs if i[3] == "parse")
    must_opcode = sum(1 for i in inputs if i[3] == "opcode")
    return impossible, must_parse, must_opcode


def test_hostile_inputs_hurt_only_their_own_connection(mongotap, jongodb, dbname):
    host, port = helpers.split_hostport(jongodb)
    relay = RecordingRelay(host, port).start()
    tap = mongotap(upstream=relay.address)
    inputs = hostile_inputs()
    good = GoodClient(tap.uri(dbname), dbname)
    good.start()
    bystander = helpers.raw_connect(tap.host, tap.port)
    try:
        assert good.wait_rounds(3, 30), "good client did not start: %r" % good.errors
        assert helpers.raw_ping(bystander, request_id=1)["ok"] == 1.0
        before = tap.get_json("/api/stats")

        results = wire.probe_all((tap.host, tap.port), [i[:3] for i in inputs], parallel=12,
                                 timeout=5)

        assert tap.running(), "mongotap died; stderr:\n" + tap.logs()[-5000:]
        assert tap.get("/healthz")[0] == 200
        # the long-lived raw connection and the driver never noticed
        assert helpers.raw_ping(bystander, request_id=2)["ok"] == 1.0
        rounds = good.rounds
        assert good.wait_rounds(rounds + 3, 30), "good client stalled: %r" % good.errors
    finally:
        bystander.close()
        good.stop_event.set()
        good.join(30)
    assert not good.errors, good.errors[:5]
    # every relayed connection ends (a server that stalls gets 30 s)
    ended = relay.wait_closed(30)
    conns = relay.snapshot()
    relay.close()
    assert ended, [c for c in conns if not c.ended][:5]
    ping = helpers.op_msg({"ping": 1, "$db": "admin"}, request_id=1)
    checked = check_upstream_saw(
        conns, inputs, lambda up: GOOD_APP.encode() in up or up.startswith(ping))

    by_name = {r.name: r for r in results}
    # impossible headers: the proxy itself closes, at once and without a byte of reply
    for name, data, end, klass in inputs:
        r = by_name[name]
        if klass == "header":
            assert r.outcome in ("closed", "answered"), r
            assert_whole_replies(data, r.reply, name)
            assert r.seconds < 2.0, r
    after = tap.get_json("/api/stats")
    delta = {k: after[k] - before[k]
             for k in ("protocol_errors", "parse_errors", "messages_unknown_opcode")}
    impossible, must_parse, must_opcode = expected_counts(inputs)
    assert delta["protocol_errors"] == impossible, (delta, impossible)
    assert delta["parse_errors"] >= must_parse, (delta, must_parse)
    assert delta["messages_unknown_opcode"] >= must_opcode, (delta, must_opcode)
    assert tap.running()

    outcomes = {}
    for r in results:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    print("hostile inputs: %d tried (%d impossible headers, %d must-not-parse, %d unknown "
          "opcodes, %d mutations); outcomes %r; counters grew by %r; %d upstream streams "
          "checked; good client %d rounds"
          % (len(inputs), impossible, must_parse, must_opcode,
             sum(1 for i in inputs if i[0].startswith("mutation-")), outcomes, delta, checked,
             good.rounds))
    slow = sorted(results, key=lambda r: -(r.seconds or 0))[:3]
    print("slowest: %r" % slow)


@pytest.mark.parametrize("split", [1, 7, 4096])
def test_hostile_input_in_small_pieces(mongotap, dbname, split):
    """The same kinds of input arriving a few bytes at a time exercise every split point of
    header, sections and BSON; the proxy must reach the same verdicts."""
    tap = mongotap()
    picks = [i for i in hostile_inputs()
             if i[0] in ("length-8", "length-48000001", "section-kind-7", "bson-length-past-end",
                         "utf8-invalid-key", "opcode-9999", "good-good-impossible",
                         "compressor-id-99")]
    before = tap.get_json("/api/stats")
    for name, data, end, klass in picks:
        with helpers.raw_connect(tap.host, tap.port) as s:
            try:
                for off in range(0, len(data), split):
                    s.sendall(data[off:off + split])
            except OSError:
                pass  # closed under us: that is the verdict for an impossible header
            if klass == "header":
                _, reply = helpers.wait_closed(s, 2.0)
                assert_whole_replies(data, reply, name)
    # the last pieces may still be in flight: poll the counters with a deadline
    impossible, must_parse, must_opcode = expected_counts(picks)

    def grown():
        after = tap.get_json("/api/stats")
        d = [after[k] - before[k]
             for k in ("protocol_errors", "parse_errors", "messages_unknown_opcode")]
        return d if d[0] == impossible and d[1] >= must_parse and d[2] >= must_opcode else None

    assert procinfo.wait_until(grown, 5), (tap.get_json("/api/stats"), impossible, must_parse,
                                           must_opcode)
    assert tap.running()
