"""/events under a viewer that stops reading: the proxy keeps its throughput, a healthy viewer keeps
getting its `stats` event every second, and the stuck viewer is dropped (its bounded queue
overflows and the connection is closed) instead of buffering without end. A viewer gets every
finding found while it is connected, as the same JSON /api/findings has."""

import json
import socket
import statistics
import threading
import time

import pymongo

import helpers

N_SHAPES = 20        # as many distinct shapes as a stats event carries
FIELDS_PER_SHAPE = 30
KEYS_PER_ROUND = 60  # request windows (each one an N+1 finding) per round
PARENT_DOCS = 6


def pressure_filter(i, value):
    """Shape i: many long field names, so that each stats event is as large as it gets."""
    return {"a_rather_long_field_name_to_fatten_stats_events_%02d_%02d" % (i, k): value
            for k in range(FIELDS_PER_SHAPE)}


def run_round(coll, round_no):
    """Seconds taken by one round of round trips through the proxy: the fat shapes once each,
    then KEYS_PER_ROUND explicit request windows (comment "mongotap:...") each holding one find
    of PARENT_DOCS documents and one _id lookup per document, i.e. one N+1 finding (and one
    `finding` event) per window."""
    start = time.monotonic()
    for n in range(N_SHAPES):
        coll.find_one(pressure_filter(n, round_no))
    for k in range(KEYS_PER_ROUND):
        key = "mongotap:sse-%d-%d" % (round_no, k)
        ids = [d["_id"] for d in coll.find({"kind": "parent"}, comment=key)]
        assert len(ids) == PARENT_DOCS
        for i in ids:
            coll.find_one({"_id": i}, comment=key)
    return time.monotonic() - start


def seed(coll):
    coll.insert_many([{"_id": i, "kind": "parent"} for i in range(PARENT_DOCS)])


class Viewer(threading.Thread):
    """Reads /events and timestamps every complete `stats` event."""

    def __init__(self, host, port):
        super().__init__(daemon=True)
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n"
                          % (host.encode(), port))
        self.stats_at = []
        self.findings = []
        self.head = b""
        self.closed = False
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self):
        buf = b""
        self.sock.settimeout(0.5)
        while not self._halt.is_set():
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if not self.head and b"\r\n\r\n" in buf:
                self.head, buf = buf.split(b"\r\n\r\n", 1)
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if b"event: stats" in event:
                    with self._lock:
                        self.stats_at.append(time.monotonic())
                elif b"event: finding" in event:
                    data = b"".join(line[len(b"data: "):] for line in event.split(b"\n")
                                    if line.startswith(b"data: "))
                    with self._lock:
                        self.findings.append(json.loads(data))
        self.closed = True

    def finding_ids(self):
        with self._lock:
            return [f["id"] for f in self.findings]

    def finding(self, fid):
        with self._lock:
            return next((f for f in self.findings if f["id"] == fid), None)

    def count_since(self, t):
        with self._lock:
            return sum(1 for x in self.stats_at if x >= t)

    def stop(self):
        self._halt.set()
        self.join(5)
        self.sock.close()


def stuck_viewer(host, port):
    """A /events viewer that never calls recv(), with a receive buffer as small as allowed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.settimeout(10)
    s.connect((host, port))
    s.sendall(b"GET /events HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host.encode(), port))
    return s


def client_and_viewer(tap, dbname):
    """A client of tap, and a /events viewer of it, reading."""
    client = pymongo.MongoClient(tap.uri(dbname), serverSelectionTimeoutMS=10000)
    viewer = Viewer(*tap.admin)
    viewer.start()
    return client, viewer


def test_stuck_viewer_neither_slows_the_proxy_nor_starves_others(mongotap, dbname):
    tap = mongotap()
    host, port = tap.admin
    client, healthy = client_and_viewer(tap, dbname)
    stuck = None
    try:
        coll = client[dbname]["pressure"]
        seed(coll)
        rounds_run = iter(range(1, 1000000))
        run_round(coll, next(rounds_run))  # warm up: every shape exists
        baseline = [run_round(coll, next(rounds_run)) for _ in range(3)]

        log_mark = len(tap.log_lines())
        stuck = stuck_viewer(host, port)
        started = time.monotonic()
        rounds = []
        dropped = None
        while time.monotonic() - started < 90:
            rounds.append(run_round(coll, next(rounds_run)))
            dropped = tap.wait_for_log(r"viewer dropped", timeout=0, start=log_mark)
            if dropped:
                break
        assert dropped, ("the stuck /events viewer was not dropped within 90s "
                         "(its queue must be bounded); mongotap log:\n%s" % tap.logs()[-3000:])
        elapsed = time.monotonic() - started

        base = statistics.median(baseline)
        worst = max(rounds)
        assert worst <= 3 * base + 0.5, (
            "a round took %.2fs with a stuck viewer, %.2fs without (rounds %r)" % (worst, base, rounds))

        # The healthy viewer got its event about once a second all along.
        got = healthy.count_since(started)
        # (the drop may come within a second or two; "others go on" is checked below)
        assert got >= max(1, int(elapsed * 0.6)), "%d stats events in %.1fs" % (got, elapsed)

        assert healthy.head.startswith(b"HTTP/1.1 200"), healthy.head
        assert b"text/event-stream" in healthy.head.lower(), healthy.head

        # Dropped means closed: what the kernel still held arrives, then end of stream.
        seconds, data = helpers.wait_closed(stuck, timeout=15)
        assert data.startswith(b"HTTP/1.1 200"), data[:200]

        # Others go on after the drop.
        after = time.monotonic()
        deadline = after + 10
        while healthy.count_since(after) < 2 and time.monotonic() < deadline:
            run_round(coll, next(rounds_run))
        assert healthy.count_since(after) >= 2, "healthy viewer starved after the drop"
        assert not healthy.closed
        status, _, body = tap.get("/healthz")
        assert status == 200
    finally:
        healthy.stop()
        if stuck is not None:
            stuck.close()
        client.close()


def one_n1_window(coll, key):
    """One explicit request window holding one N+1: a find of PARENT_DOCS documents, then one _id
    lookup per document."""
    ids = [d["_id"] for d in coll.find({"kind": "parent"}, comment=key)]
    for i in ids:
        coll.find_one({"_id": i}, comment=key)


def new_finding(tap, known):
    """The one finding of /api/findings not in known, once its window has been analysed."""
    def fresh():
        found = [f for f in tap.get_json("/api/findings")["findings"] if f["id"] not in known]
        return found[0] if len(found) == 1 else None
    return helpers.poll("a new finding in /api/findings", fresh, timeout=15)


def test_a_viewer_gets_every_finding_as_the_api_has_it(mongotap, dbname):
    # Findings are rendered as JSON only while a findings log or a viewer wants them: a viewer
    # that comes after another has gone must still get its findings.
    tap = mongotap()
    client, first = client_and_viewer(tap, dbname)
    second = None
    try:
        coll = client[dbname]["events"]
        seed(coll)
        helpers.poll("the first viewer's stream", lambda: first.head, timeout=10)
        one_n1_window(coll, "mongotap:sse-first")
        f1 = new_finding(tap, set())
        got = helpers.poll("the finding on the first viewer", lambda: first.finding(f1["id"]))
        assert got == f1, (got, f1)
        first.stop()

        one_n1_window(coll, "mongotap:sse-nobody")
        f2 = new_finding(tap, {f1["id"]})
        assert f2["type"] == "n_plus_one" and f2["children"]["count"] == PARENT_DOCS, f2

        second = Viewer(*tap.admin)
        second.start()
        helpers.poll("the second viewer's stream", lambda: second.head, timeout=10)
        one_n1_window(coll, "mongotap:sse-second")
        f3 = new_finding(tap, {f1["id"], f2["id"]})
        got = helpers.poll("the finding on the second viewer", lambda: second.finding(f3["id"]))
        assert got == f3, (got, f3)
        assert f1["id"] not in second.finding_ids()
    finally:
        first.stop()
        if second is not None:
            second.stop()
        client.close()
