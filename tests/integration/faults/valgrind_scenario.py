"""Runs one mongotap binary under valgrind memcheck through an integration scenario and checks
the verdict: PyMongo CRUD with a cursor, a lazy N+1 (so windows, findings and reports are made),
every admin route, a few hostile messages (error paths), then SIGTERM. Passes when mongotap
exits 0 with no memory error and no definitely or indirectly lost block; "still reachable" is
expected (the loop stops with h2o's state allocated) and fine.

    python3 valgrind_scenario.py BINARY [--keep-log PATH]
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pymongo  # noqa: E402
from bson.binary import Binary  # noqa: E402

import helpers  # noqa: E402
from faults import wire  # noqa: E402


def scenario(tap_addr, admin, db):
    host, port = tap_addr
    uri = "mongodb://%s:%d/%s?directConnection=true" % (host, port, db)
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=60000, appname="valgrind") as c:
        col = c[db]["items"]
        col.insert_many([{"_id": i, "kind": "k%d" % (i % 3), "pad": "p" * (i * 7)}
                         for i in range(200)])
        assert len(list(col.find({}, batch_size=9))) == 200
        assert col.count_documents({"kind": "k1"}) == 67
        col.update_many({"kind": "k2"}, {"$set": {"seen": True}})
        col.delete_many({"_id": {"$gte": 190}})
        list(col.aggregate([{"$match": {"kind": "k0"}}, {"$group": {"_id": "$kind",
                                                                     "n": {"$sum": 1}}}]))
        # messages larger than one read buffer take the reassembly path both ways
        blob = bytes(range(256)) * 4096
        c[db]["blobs"].insert_one({"_id": 1, "b": Binary(blob)})
        assert bytes(c[db]["blobs"].find_one({"_id": 1})["b"]) == blob
        # a lazy N+1: one find of the parents, then one find per parent
        c[db]["child"].insert_many([{"_id": "c%d" % i, "v": i} for i in range(12)])
        c[db]["parent"].insert_many([{"_id": i, "child": "c%d" % i} for i in range(12)])
        for p in list(c[db]["parent"].find({})):
            c[db]["child"].find_one({"_id": p["child"]})
    # connections that come and go, one leaving in the middle of a message
    for i in range(30):
        with helpers.raw_connect(host, port, timeout=30) as s:
            helpers.raw_ping(s, request_id=i + 1)
    half = wire.op_msg({"insert": "blobs", "documents": [{"_id": 2, "b": Binary(b"x" * 300000)}],
                        "$db": db})
    wire.probe((host, port), "half", half[:150000], end="reset", timeout=30)
    # hostile messages: an impossible header, a section of unknown kind, an unknown opcode
    for data in (wire.header(8), wire.op_msg_sections([b"\x07" + b"\x05\x00\x00\x00\x00"]),
                 wire.message(9999, b"\x00" * 8),
                 wire.op_compressed(wire.OP_MSG, 48_000_001, wire.COMPRESSOR_ZLIB, b"x")):
        wire.probe((host, port), "v", data, timeout=30)
    # give the window a moment past --window-gap-ms, then read every route
    deadline = time.monotonic() + 30
    base = "http://%s:%d" % admin
    while time.monotonic() < deadline:
        with urllib.request.urlopen(base + "/api/findings", timeout=30) as r:
            if b'"n_plus_one"' in r.read():
                break
        time.sleep(0.2)
    else:
        raise AssertionError("no N+1 finding under valgrind within 30 s")
    for route in ("/healthz", "/metrics", "/api/stats", "/api/connections", "/api/windows",
                  "/api/report?format=json", "/api/report?format=markdown",
                  "/api/report?format=html", "/"):
        with urllib.request.urlopen(base + route, timeout=30) as r:
            assert r.status == 200, route
            r.read()
    assert helpers.http_post(base + "/api/reset", timeout=30)[0] == 200


def summarize(log):
    """(errors, definitely lost bytes, indirectly lost bytes, lines worth showing)."""
    errors = re.search(r"ERROR SUMMARY: ([\d,]+) errors", log)
    definite = re.search(r"definitely lost: ([\d,]+) bytes", log)
    indirect = re.search(r"indirectly lost: ([\d,]+) bytes", log)
    num = lambda m: int(m.group(1).replace(",", "")) if m else 0  # noqa: E731
    shown = [line for line in log.splitlines()
             if re.search(r"(ERROR SUMMARY|definitely lost|indirectly lost|still reachable|"
                          r"in use at exit|All heap blocks)", line)]
    return (num(errors) if errors else None), num(definite), num(indirect), shown


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("--keep-log", help="copy valgrind's log here")
    args = ap.parse_args(argv)

    jongodb = helpers.Jongodb()
    tmp = tempfile.mkdtemp(prefix="mongotap-valgrind-")
    vlog = os.path.join(tmp, "valgrind.log")
    cmd = ["valgrind", "--tool=memcheck", "--leak-check=full",
           "--errors-for-leak-kinds=definite,indirect",
           "--show-leak-kinds=definite,indirect,possible",
           "--error-exitcode=99", "--num-callers=30", "--log-file=" + vlog,
           args.binary, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
           "--upstream", jongodb.address, "--findings-log", os.path.join(tmp, "findings.jsonl"),
           "--report", os.path.join(tmp, "report.json"), "--log-level", "debug"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    err = helpers._OutputCollector(proc.stderr, "valgrind-mongotap")
    rc = None
    try:
        m = err.wait_for(helpers.READY_RE.pattern, 120)
        if not m:
            raise SystemExit("mongotap under valgrind printed no ready line in 120 s:\n"
                             + err.text()[-3000:])
        listen = helpers.split_hostport(m.group(1).split(",")[0])
        admin = helpers.split_hostport(m.group(2))
        scenario(listen, admin, "valgrind_%d" % os.getpid())
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        jongodb.kill()
        err.join()
    took = time.monotonic() - start
    with open(vlog) as f:
        log = f.read()
    if args.keep_log:
        with open(args.keep_log, "w") as f:
            f.write(log)
    errors, definite, indirect, shown = summarize(log)
    print("valgrind: mongotap exited %s after %.1fs" % (rc, took))
    for line in shown:
        print("valgrind: " + line.split("== ", 1)[-1])
    ok = rc == 0 and errors == 0 and definite == 0 and indirect == 0
    if not ok:
        print(log[-20000:], file=sys.stderr)
        print("mongotap stderr (tail):\n" + err.text()[-3000:], file=sys.stderr)
        print("valgrind: FAILED (exit %s, %s errors, %d definitely and %d indirectly lost bytes)"
              % (rc, errors, definite, indirect), file=sys.stderr)
        return 1
    print("valgrind: ok (0 errors, 0 bytes definitely or indirectly lost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
