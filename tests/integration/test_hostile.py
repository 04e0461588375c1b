"""Hostile traffic must not stall, bloat or take over the proxy: compression bombs beside a
measured bystander, names of megabytes, a flood of idle admin connections, cross-site posts and
DNS rebinding against the admin endpoint, and field names that are user data. Resource figures
(CPU seconds, resident MiB) are asserted with wide margins; latencies are printed, never
asserted."""

import base64
import hashlib
import re
import socket
import statistics
import threading
import time

import pymongo

import helpers
from faults import procinfo, wire

TOKEN = "tok-hostile-4b1d9e"
MIB = 1024 * 1024


def counters(tap):
    return tap.get_json("/api/stats")["counters"]


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
