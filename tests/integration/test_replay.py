"""A recorded conversation (tests/fixtures/replay/conversation.json, made by
tests/fixtures/conversation.py against jongodb) replayed through mongotap gives the same
/api/stats, /api/findings and JSON report as the last reviewed run (expected.json beside it),
once the figures that depend on timing are set aside. A change to what mongotap accounts or
detects shows here as a diff to review; regenerate with MONGOTAP_REPLAY_WRITE=1 and read the diff.

The upstream is a replayer: for each request it receives it sends the replies recorded for those
exact bytes, so mongotap sees the same messages both ways as in the recording."""

import base64
import collections
import json
import os
import socket
import struct
import threading
import time

import helpers

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "replay")
GAP_MS = 50  # --window-gap-ms: a recorded pause of >= 100 ms is replayed as 3x this


def load_conversation():
    with open(os.path.join(FIXTURES, "conversation.json")) as f:
        conv = json.load(f)
    return [[(m["t"], m["dir"], base64.b64decode(m["b64"])) for m in c]
            for c in conv["connections"]]


def recv_message(sock):
    """One whole message as raw bytes, or None when the peer closed."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (length,) = struct.unpack("<i", head)
    body = b""
    while len(body) < length - 4:
        chunk = sock.recv(length - 4 - len(body))
        if not chunk:
            return None
        body += chunk
    return head + body


def replies_by_request(conns):
    """request bytes -> queue of reply lists, in recorded order. A reply belongs to the latest
    request before it on its connection (exhaust streams: several replies to one request)."""
    table = collections.defaultdict(collections.deque)
    for conn in conns:
        current = None
        for _, direction, msg in conn:
            if direction == "c2s":
                current = []
                table[msg].append(current)
            elif current is not None:
                current.append(msg)
    return table


class Replayer:
    """An upstream that answers each request with the replies recorded for its bytes."""

    def __init__(self, table):
        self.table = table
        self.lock = threading.Lock()
        self.unknown = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                msg = recv_message(conn)
                if msg is None:
                    return
                if helpers.MONITOR_MARK in msg:
                    return  # mongotap's upstream monitor: no recording answers it
                with self.lock:
                    queue = self.table.get(msg)
                    replies = queue.popleft() if queue else None
                    if replies is None:
                        self.unknown += 1
                for r in replies or []:
                    conn.sendall(r)

    def close(self):
        self.sock.close()


def replay(tap, conns):
    """Sends each connection's requests in order, one connection after the other, waiting for
    the replies recorded for each before the next; recorded pauses become window gaps."""
    for conn in conns:
        with helpers.raw_connect(tap.host, tap.port, timeout=10) as sock:
            last_t = None
            for i, (t, direction, msg) in enumerate(conn):
                if direction != "c2s":
                    continue
                if last_t is not None and t - last_t >= 0.1:
                    time.sleep(3 * GAP_MS / 1000.0)
                last_t = t
                sock.sendall(msg)
                expect = 0
                for _, d, _m in conn[i + 1:]:
                    if d == "c2s":
                        break
                    expect += 1
                for _ in range(expect):
                    try:
                        reply = recv_message(sock)
                    except socket.timeout:
                        reply = None
                    assert reply is not None, "no reply to message %d of %d: %r" % (
                        i, len(conn), tap.logs()[-2000:])
    time.sleep(3 * GAP_MS / 1000.0)  # every window is now idle for longer than the gap


VOLATILE = ("_ms", "_at", "_seen", "uptime_s", "ops_per_sec", "latency_ms", "rank")


def normalize(value):
    """Drops figures that depend on timing and addresses; orders lists by content."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k.endswith(VOLATILE) or k in ("addr", "client", "generated", "uptime"):
                continue
            out[k] = normalize(v)
        return out
    if isinstance(value, list):
        items = [normalize(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def test_replayed_conversation_gives_the_reviewed_outputs(mongotap):
    conns = load_conversation()
    upstream = Replayer(replies_by_request(conns))
    try:
        tap = mongotap("--window-gap-ms", str(GAP_MS), upstream="127.0.0.1:%d" % upstream.port)
        replay(tap, conns)
        # every window has closed (idle beyond the gap): stats, findings and report are settled
        assert helpers.admin_json(tap.admin_url + "/api/stats")["windows"]["open"] == 0
        got = {
            "stats": normalize(tap.get_json("/api/stats?limit=1000")),
            "findings": normalize(tap.get_json("/api/findings")),
            "report": normalize(tap.get_json("/api/report?format=json")),
        }
        assert upstream.unknown == 0, "the replayer got requests it had no recording for"
    finally:
        upstream.close()
    path = os.path.join(FIXTURES, "expected.json")
    if os.environ.get("MONGOTAP_REPLAY_WRITE"):
        with open(path, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(path) as f:
        want = json.load(f)
    for part in ("stats", "findings", "report"):
        assert got[part] == want[part], "%s differs from %s:\n%s" % (
            part, path, json.dumps(got[part], indent=1, sort_keys=True)[:6000])
