"""Replica sets and readiness. Three scripted members (tests/integration/faults/members.py) answer
hello as primary or secondary of rs0 with one host list and forward everything else, byte for
byte, to one jongodb. mongotap is given one seed, learns the others, sends each new client
connection to the primary; when the primary steps down during a PyMongo workload, new connections
reach the new primary, the old ones close once their in-flight replies are delivered, the driver's
retries succeed and no reply is lost or altered; /api/upstream and /metrics say so. /readyz
follows the upstream, and mongotap says so in one warn line each time that changes."""

import re
import subprocess
import threading
import time

import pymongo
import pytest

import helpers
from faults.members import ScriptedSet


def rs_upstream(rs, seed=0, extra=""):
    return "mongodb://%s/?replicaSet=rs0&heartbeatFrequencyMS=500%s" % (rs.members[seed].name,
                                                                        extra)


def wait_until(predicate, timeout, what):
    """For state with no log line or event to wait on: polls predicate, fails after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting until %s" % what
        time.sleep(0.05)


class Worker(threading.Thread):
    """One application thread: insert a document with a new _id, read it back, again and again,
    through its own client with retryable reads and writes. Every operation must succeed."""

    def __init__(self, uri, dbname, k):
        super().__init__(daemon=True)
        self.uri, self.dbname, self.k = uri, dbname, k
        self.done = 0
        self.errors = []
        self.ids = []
        self.stop_event = threading.Event()
        self.cond = threading.Condition()

    def run(self):
        try:
            with pymongo.MongoClient(self.uri, maxPoolSize=2, retryWrites=True, retryReads=True,
                                     serverSelectionTimeoutMS=20000) as c:
                col = c[self.dbname]["work"]
                while not self.stop_event.is_set():
                    _id = "w%d-%d" % (self.k, self.done)
                    col.insert_one({"_id": _id, "k": self.k, "n": self.done})
                    self.ids.append(_id)
                    got = col.find_one({"_id": _id})
                    if got != {"_id": _id, "k": self.k, "n": self.done}:
                        self.errors.append("read back %r for %s" % (got, _id))
                    with self.cond:
                        self.done += 1
                        self.cond.notify_all()
        except Exception as e:  # noqa: BLE001 - the test reports every failure
            self.errors.append(repr(e))
            with self.cond:
                self.cond.notify_all()

    def wait_done(self, n, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.done >= n or self.errors, timeout)


def test_primary_steps_down_during_a_workload(mongotap, jongodb, dbname):
    with ScriptedSet(jongodb) as rs:
        tap = mongotap("--upstream", rs_upstream(rs), upstream=None)
        first, second = rs.members[0], rs.members[1]
        assert tap.wait_for_log(r"upstream primary is %s" % re.escape(first.name), 15), tap.logs()
        up = tap.get_json("/api/upstream")
        assert up["kind"] == "replica_set" and up["set_name"] == "rs0", up
        assert sorted(m["member"] for m in up["members"]) == sorted(m.name for m in rs.members), \
            "the other two members were learned from hello's host list"

        workers = [Worker(tap.uri(dbname), dbname, k) for k in range(4)]
        for w in workers:
            w.start()
        try:
            for w in workers:
                assert w.wait_done(20, 60), "worker %d: %r" % (w.k, w.errors)
            assert first.open_client_conns(), "the sessions went to the primary"
            assert not second.client_conns(), "nothing went to a secondary"

            stepped_down_at = time.monotonic()
            rs.step_down(0, 1)
            assert tap.wait_for_log(r"warn .*upstream primary is now %s" % re.escape(second.name),
                                    15), tap.logs()
            # the old primary's sessions close once they owe nothing
            wait_until(lambda: not first.open_client_conns(), 15,
                       "the old primary's client connections are closed")
            base = [w.done for w in workers]
            for w, b in zip(workers, base):
                assert w.wait_done(b + 20, 60), "worker %d after the step-down: %r" % (w.k,
                                                                                     w.errors)
        finally:
            for w in workers:
                w.stop_event.set()
            for w in workers:
                w.join(60)

        for w in workers:
            assert not w.errors, "worker %d: %r; mongotap:\n%s" % (w.k, w.errors,
                                                                 tap.logs()[-6000:])
        new = [c for c in second.client_conns() if c.opened_at > stepped_down_at]
        assert any(c.requests > 0 for c in new), "new connections reach the new primary"
        assert not [c for c in first.client_conns() if c.opened_at > stepped_down_at + 1.0], \
            "no new connection went to the old primary once the change was seen"
        # every acknowledged insert is there exactly once, and nothing else
        ids = [i for w in workers for i in w.ids]
        with pymongo.MongoClient("mongodb://%s/?directConnection=true" % jongodb) as direct:
            stored = [d["_id"] for d in direct[dbname]["work"].find({}, {"_id": 1})]
        assert sorted(stored) == sorted(ids), (len(stored), len(ids))

        up = tap.get_json("/api/upstream")
        assert up["primary"] == second.name and up["primary_changes"] == 1, up
        states = {m["member"]: m["state"] for m in up["members"]}
        assert states == {first.name: "secondary", second.name: "primary",
                          rs.members[2].name: "secondary"}, states
        assert all(m["up"] and m["rtt_ms"] is not None for m in up["members"]), up
        stats = tap.get_json("/api/stats")
        assert stats["upstream"] == {"primary_changes": 1, "ready": 1}, stats["upstream"]
        assert stats["connections"]["retired"] >= 1
        assert stats["replies_unmatched"] == 0, stats
        metrics = tap.get("/metrics")[2].decode()
        assert "mongotap_upstream_primary_changes_total 1" in metrics
        for m in rs.members:
            assert 'mongotap_upstream_member_up{member="%s"} 1' % m.name in metrics, metrics
        print("step-down: %d operations, %d retired sessions" % (
            sum(w.done for w in workers), stats["connections"]["retired"]))


def test_a_new_connection_waits_for_a_primary(mongotap, jongodb):
    with ScriptedSet(jongodb) as rs:
        tap = mongotap("--upstream", rs_upstream(rs, extra="&connectTimeoutMS=10000"),
                       upstream=None)
        assert tap.wait_for_log(r"upstream primary is ", 15), tap.logs()
        rs.members[0].role = "secondary"  # an election: no primary for now
        rs.election += 1
        assert tap.wait_for_log(r"warn .*upstream has no primary", 15), tap.logs()
        assert tap.get("/readyz")[0] == 503
        with helpers.raw_connect(tap.host, tap.port, timeout=15) as s:
            s.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}, request_id=9))
            rs.members[2].role = "primary"
            (_, _, response_to, _), body = helpers.read_message(s)
            assert response_to == 9 and helpers.op_msg_reply_doc(body)["ok"] == 1.0
        assert rs.members[2].client_conns(), "the waiting connection went to the new primary"
        assert tap.get("/readyz")[0] == 200


def test_readyz_follows_the_upstream(mongotap, jongodb_factory):
    port = helpers.free_port()
    upstream = "mongodb://127.0.0.1:%d/?directConnection=true&heartbeatFrequencyMS=500" % port
    tap = mongotap("--upstream", upstream, upstream=None)
    assert tap.wait_for_log(r"warn .*upstream \S+ not reachable: 127\.0\.0\.1:%d: connect: "
                            r"connection refused; /readyz answers 503 until it is" % port, 15), \
        tap.logs()
    status, _, body = tap.get("/readyz")
    assert status == 503 and b"connection refused" in body, (status, body)
    assert tap.get("/healthz")[0] == 200, "liveness does not depend on the upstream"
    assert tap.get_json("/api/upstream")["ready"] is False

    server = jongodb_factory(port=port)
    assert tap.wait_for_log(r"warn .*upstream \S+ reachable again", 15), tap.logs()
    assert tap.get("/readyz")[0] == 200
    assert "mongotap_upstream_ready 1" in tap.get("/metrics")[2].decode()

    server.kill()
    assert tap.wait_for_log(r"warn .*upstream \S+ not reachable: .*; /readyz answers 503$", 15), \
        tap.logs()
    assert tap.get("/readyz")[0] == 503
    assert "mongotap_upstream_ready 0" in tap.get("/metrics")[2].decode()


def test_readyz_reason_needs_the_token(mongotap):
    tap = mongotap("--admin-token", "s3cret", upstream="127.0.0.1:9")
    assert tap.wait_for_log(r"not reachable", 15), tap.logs()
    status, _, body = tap.get("/readyz")
    assert status == 503 and body == b"not ready\n", body
    status, _, body = tap.get("/readyz", token="s3cret")
    assert status == 503 and b"connection refused" in body, body
    assert tap.get("/api/upstream")[0] == 401
    assert tap.get("/api/upstream", token="s3cret")[0] == 200


@pytest.mark.parametrize("uri, problem", [
    ("mongodb://a,b/?directConnection=true", "directConnection"),
    ("mongodb://127.0.0.1:1/?replicaSet=rs0&heartbeatFrequencyMS=10", "heartbeatFrequencyMS"),
])
def test_bad_connection_strings_name_the_option(uri, problem):
    r = subprocess.run([helpers.mongotap_bin(), "--upstream", uri], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and problem in r.stderr and r.stderr.count("\n") == 1, r.stderr
