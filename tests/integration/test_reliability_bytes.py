"""Byte-exactness under load: a recording relay on each side of mongotap (clients -> relay ->
mongotap -> relay -> jongodb) while 32 PyMongo clients run a mixed workload with documents up to
1 MB, cursors with getMore, aggregates, updates and deletes. Every connection's byte stream must
be identical on both sides of mongotap, in both directions, and mongotap's byte counters must
equal what the relays saw."""

import random
import threading
import time

import pymongo
from bson.binary import Binary

import helpers
from faults.relay import RecordingRelay

NCLIENTS = 32


def workload(uri, dbname, k, errors, counts):
    rng = random.Random(k)
    try:
        with pymongo.MongoClient(uri, maxPoolSize=1, appname="bytes-%d" % k,
                                 serverSelectionTimeoutMS=20000) as c:
            col = c[dbname]["bx_%d" % k]
            small = [{"_id": i, "k": k, "grp": i % 5, "s": "v%d" % i * (i % 7)} for i in range(60)]
            col.insert_many(small)
            blobs = {}
            for j in range(2):
                size = rng.randrange(100 * 1024, 1024 * 1024)
                blobs[1000 + j] = rng.randbytes(size)
                col.insert_one({"_id": 1000 + j, "k": k, "grp": 9, "blob": Binary(blobs[1000 + j])})
            got = [d["_id"] for d in col.find({"grp": {"$lt": 5}}, batch_size=7).sort("_id", 1)]
            if got != list(range(60)):
                errors.append("client %d: cursor returned %d ids" % (k, len(got)))
            groups = {g["_id"]: g["n"] for g in col.aggregate(
                [{"$match": {"grp": {"$lt": 5}}}, {"$group": {"_id": "$grp", "n": {"$sum": 1}}}])}
            if groups != {g: 12 for g in range(5)}:
                errors.append("client %d: aggregate %r" % (k, groups))
            r = col.update_many({"grp": 3}, {"$set": {"touched": True}})
            if r.modified_count != 12:
                errors.append("client %d: update_many modified %d" % (k, r.modified_count))
            if col.delete_one({"_id": 0}).deleted_count != 1:
                errors.append("client %d: delete_one" % k)
            for _id, data in blobs.items():
                doc = col.find_one({"_id": _id})
                if doc is None or bytes(doc["blob"]) != data:
                    errors.append("client %d: blob %d differs" % (k, _id))
            big = list(col.find({"grp": 9}, batch_size=1))
            if len(big) != 2:
                errors.append("client %d: %d big docs" % (k, len(big)))
            if col.count_documents({"touched": True}) != 12:
                errors.append("client %d: count" % k)
            counts[k] = sum(map(len, blobs.values()))
    except Exception as e:  # noqa: BLE001 - every failure is reported by the test
        errors.append("client %d: %r" % (k, e))


def first_difference(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n if len(a) != len(b) else None


def test_every_byte_identical_on_both_sides(mongotap, jongodb, dbname):
    host, port = helpers.split_hostport(jongodb)
    with RecordingRelay(host, port) as up_relay:
        tap = mongotap(upstream=up_relay.address)
        with RecordingRelay(tap.host, tap.port) as client_relay:
            uri = "mongodb://%s/%s?directConnection=true" % (client_relay.address, dbname)
            errors, counts = [], {}
            start = time.monotonic()
            threads = [threading.Thread(target=workload, args=(uri, dbname, k, errors, counts))
                       for k in range(NCLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(1, 150 - (time.monotonic() - start)))
            took = time.monotonic() - start
            assert not any(t.is_alive() for t in threads), "workload still running after 150 s"
            assert not errors, errors[:10]
            # the clients have closed: every relayed connection ends on both sides
            assert client_relay.wait_closed(15), [c for c in client_relay.snapshot()
                                                  if not c.ended]
            assert up_relay.wait_closed(15), [c for c in up_relay.snapshot() if not c.ended]
            stats = tap.get_json("/api/stats")
            near = client_relay.snapshot()
            far = up_relay.snapshot()

    assert len(near) == len(far) >= 2 * NCLIENTS, (len(near), len(far))
    assert not any(c.reset for c in near + far), [c for c in near + far if c.reset][:5]
    # pair the connections by their first message (its requestID is unique) and compare
    far_by_first = {}
    for c in far:
        far_by_first.setdefault(bytes(c.c2s[:64]), []).append(c)
    problems = []
    for c in near:
        candidates = far_by_first.get(bytes(c.c2s[:64]), [])
        match = next((f for f in candidates if f.c2s == c.c2s and f.s2c == c.s2c), None)
        if match is None:
            f = candidates[0] if candidates else None
            problems.append("client connection #%d (%d up, %d down bytes): %s" % (
                c.index, len(c.c2s), len(c.s2c),
                "no upstream connection began the same way" if f is None else
                "first difference up at %s, down at %s" % (first_difference(c.c2s, f.c2s),
                                                           first_difference(c.s2c, f.s2c))))
        else:
            candidates.remove(match)
    assert not problems, "\n".join(problems[:10])

    up_bytes = sum(len(c.c2s) for c in near)
    down_bytes = sum(len(c.s2c) for c in near)
    assert stats["bytes"]["from_clients"] == up_bytes, (stats["bytes"], up_bytes)
    assert stats["bytes"]["from_upstream"] == down_bytes, (stats["bytes"], down_bytes)
    assert up_bytes > NCLIENTS * 200 * 1024 and down_bytes > NCLIENTS * 400 * 1024
    print("byte-exact: %d connections, %.1f MB up and %.1f MB down identical on both sides, "
          "%d clients in %.1fs" % (len(near), up_bytes / 1e6, down_bytes / 1e6, NCLIENTS, took))
