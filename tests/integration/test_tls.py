"""TLS on both sides of mongotap, for real: a CA and certificates made by the openssl CLI for these
tests (tests/fixtures/make_certs.sh), jongodb behind Debian's stunnel4 as the TLS upstream, PyMongo
and the Node.js driver with tls=true&tlsCAFile=... into mongotap's TLS listener. The bytes inside
both tunnels are compared through recording relays; a certificate with an unknown CA, another host
name or an expired date is refused with its reason logged and counted; a client in the wrong mode
on either kind of listener gets one line saying what to change."""

import json
import os
import subprocess
import threading
import time

import pymongo
import pytest

import helpers
from faults.relay import RecordingRelay
from faults.stalled import StalledUpstream
from test_reliability_bytes import first_difference, workload


def cert(certs, name):
    return os.path.join(certs, name)


def tls_upstream(address, certs, host="localhost", extra=""):
    """mongotap's --upstream for a TLS server on address, named host (localhost resolves)."""
    port = helpers.split_hostport(address)[1]
    return "mongodb://%s:%d/?tls=true&tlsCAFile=%s&directConnection=true%s" % (
        host, port, cert(certs, "ca.pem"), extra)


def tls_tap(mongotap, certs, upstream, *args):
    return mongotap("--tls-listen", "127.0.0.1:0", "--tls-cert", cert(certs, "server.pem"),
                    "--tls-key", cert(certs, "server.key"), "--upstream", upstream, *args,
                    upstream=None)


def tls_client_uri(tap, certs, db, **opts):
    host, port = tap.tls_listen[0]
    extra = "".join("&%s=%s" % kv for kv in opts.items())
    return "mongodb://%s:%d/%s?tls=true&tlsCAFile=%s&directConnection=true%s" % (
        host, port, db, cert(certs, "ca.pem"), extra)


def counters(tap):
    """The TLS figures and upstream_errors of /api/stats."""
    stats = tap.get_json("/api/stats")
    return dict(stats["tls"], upstream_errors=stats["upstream_errors"])


def test_drivers_through_tls_on_both_sides(mongotap, jongodb, certs, stunnel, dbname):
    up = stunnel(jongodb, cert=cert(certs, "server.pem"), key=cert(certs, "server.key"))
    tap = tls_tap(mongotap, certs, tls_upstream(up.address, certs))
    assert tap.wait_for_log(r"upstream \S*localhost:\d+\S* reachable", 15), tap.logs()

    with pymongo.MongoClient(tls_client_uri(tap, certs, dbname), appname="tls-pymongo",
                             serverSelectionTimeoutMS=15000) as c:
        col = c[dbname]["items"]
        col.insert_many([{"_id": i, "k": i % 4, "s": "v" * i} for i in range(200)])
        assert col.count_documents({"k": 1}) == 50
        assert col.find_one({"_id": 7}) == {"_id": 7, "k": 3, "s": "vvvvvvv"}
        assert len(list(col.find({}, batch_size=13))) == 200
        assert col.update_many({"k": 2}, {"$set": {"x": 1}}).modified_count == 50
        got = {g["_id"]: g["n"] for g in col.aggregate([{"$group": {"_id": "$k",
                                                                     "n": {"$sum": 1}}}])}
        assert got == {0: 50, 1: 50, 2: 50, 3: 50}

    r = subprocess.run(["node", "crud.mjs", tls_client_uri(tap, certs, dbname + "_node"),
                        dbname + "_node"], cwd=helpers.NODE_DIR, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    node = json.loads(r.stdout)
    assert node["insertMany"] == 300 and node["getMoreUsed"] is True

    # accounting works on what went through the tunnels
    stats = tap.get_json("/api/stats?limit=1000")
    finds = [s for s in stats["shapes"] if s["collection"] == "items" and s["command"] == "find"]
    assert finds and sum(s["count"] for s in finds) >= 3, stats["shapes"]
    assert stats["tls"] == {"upstream_handshake_failures": 0, "client_handshake_failures": 0,
                            "client_hello_on_plain_listener": 0}, stats["tls"]
    upstream = tap.get_json("/api/upstream")
    assert upstream["tls"] is True and upstream["ready"] is True, upstream
    assert upstream["members"][0]["up"] is True, upstream
    assert upstream["members"][0]["member"] == "localhost:%d" % up.port
    metrics = tap.get("/metrics")[2].decode()
    assert 'mongotap_upstream_member_up{member="localhost:%d"} 1' % up.port in metrics
    assert "mongotap_upstream_ready 1" in metrics


def test_bytes_identical_inside_both_tunnels(mongotap, jongodb, certs, stunnel, dbname):
    """app -> relay -> stunnel (plain to TLS) -> mongotap's TLS listener, mongotap -> TLS ->
    stunnel -> relay -> jongodb: each relay sees the plaintext of one side of mongotap."""
    nclients = 8
    host, port = helpers.split_hostport(jongodb)
    with RecordingRelay(host, port) as far_relay:
        up = stunnel(far_relay.address, cert=cert(certs, "server.pem"),
                     key=cert(certs, "server.key"))
        tap = tls_tap(mongotap, certs, tls_upstream(up.address, certs))
        into_tap = stunnel("%s:%d" % tap.tls_listen[0], client=True, ca=cert(certs, "ca.pem"),
                           check_host="localhost")
        with RecordingRelay("127.0.0.1", into_tap.port) as near_relay:
            uri = "mongodb://%s/%s?directConnection=true" % (near_relay.address, dbname)
            errors, counts = [], {}
            threads = [threading.Thread(target=workload, args=(uri, dbname, k, errors, counts))
                       for k in range(nclients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(150)
            assert not any(t.is_alive() for t in threads), "workload still running"
            assert not errors, errors[:5]
            assert near_relay.wait_closed(15)
            assert far_relay.wait_closed(15), [c for c in far_relay.snapshot() if not c.ended]
            stats = tap.get_json("/api/stats")
            near, far = near_relay.snapshot(), far_relay.snapshot()

    assert len(near) == len(far) >= nclients, (len(near), len(far))
    far_by_first = {}
    for c in far:
        far_by_first.setdefault(bytes(c.c2s[:64]), []).append(c)
    problems = []
    for c in near:
        candidates = far_by_first.get(bytes(c.c2s[:64]), [])
        match = next((f for f in candidates if f.c2s == c.c2s and f.s2c == c.s2c), None)
        if match is None:
            f = candidates[0] if candidates else None
            problems.append("connection #%d: %s" % (c.index, "no upstream connection began the "
                            "same way" if f is None else "first difference up at %s, down at %s"
                            % (first_difference(c.c2s, f.c2s), first_difference(c.s2c, f.s2c))))
        else:
            candidates.remove(match)
    assert not problems, problems[:5]
    up_bytes = sum(len(c.c2s) for c in near)
    down_bytes = sum(len(c.s2c) for c in near)
    assert stats["bytes"]["from_clients"] == up_bytes
    assert stats["bytes"]["from_upstream"] == down_bytes
    assert down_bytes > nclients * 400 * 1024
    print("TLS byte-exact: %d connections, %.1f MB up and %.1f MB down identical inside both "
          "tunnels" % (len(near), up_bytes / 1e6, down_bytes / 1e6))


@pytest.mark.parametrize("bad, reason", [
    ("wrong-ca", "unknown CA"),
    ("wrong-host", "host name mismatch"),
    ("expired", "certificate expired"),
])
def test_bad_upstream_certificate_refused_with_its_reason(mongotap, jongodb, certs, stunnel,
                                                          bad, reason):
    up = stunnel(jongodb, cert=cert(certs, bad + ".pem"), key=cert(certs, bad + ".key"))
    tap = mongotap("--upstream", tls_upstream(up.address, certs), upstream=None)
    # the monitor says so at start, and /readyz says why
    assert tap.wait_for_log(r"warn .*upstream .* not reachable: .*TLS handshake failed: %s"
                            % reason, 15), tap.logs()
    status, _, body = tap.get("/readyz")
    assert status == 503 and reason in body.decode(), (status, body)
    # a client is closed with one line naming the reason, and counted
    with helpers.raw_connect(tap.host, tap.port) as s:
        with pytest.raises((EOFError, ConnectionResetError)):
            helpers.raw_ping(s)
    line = tap.wait_for_log(r"closed: upstream localhost:\d+ TLS handshake failed: (%s[^(]*)"
                            % reason, 5)
    assert line, tap.logs()
    c = counters(tap)
    assert c["upstream_handshake_failures"] == 1, c
    assert c["upstream_errors"] >= 1, c


def test_client_certificate_for_an_upstream_that_wants_one(mongotap, jongodb, certs, stunnel):
    up = stunnel(jongodb, cert=cert(certs, "server.pem"), key=cert(certs, "server.key"),
                 verify_clients=cert(certs, "ca.pem"))
    without = mongotap("--upstream", tls_upstream(up.address, certs), upstream=None)
    assert without.wait_for_log(r"not reachable: .*TLS handshake failed", 15), without.logs()
    assert "client certificate required" in without.get("/readyz")[2].decode()
    with helpers.raw_connect(without.host, without.port) as s:
        with pytest.raises((EOFError, ConnectionResetError)):
            helpers.raw_ping(s)
    # in TLS 1.3 the refusal comes after the client's last handshake message, so a client's
    # session may see the hang-up (an upstream error) before the alert (a TLS failure)
    c = counters(without)
    assert c["upstream_errors"] >= 1, without.logs()

    with_cert = mongotap("--upstream", tls_upstream(
        up.address, certs, extra="&tlsCertificateKeyFile=" + cert(certs, "client.pem")),
        upstream=None)
    assert with_cert.wait_for_log(r"upstream \S*localhost:\d+\S* reachable", 15), with_cert.logs()
    with helpers.raw_connect(with_cert.host, with_cert.port) as s:
        assert helpers.raw_ping(s)["ok"] == 1.0


def test_tls_upstream_that_never_answers_the_handshake(mongotap, certs):
    """TCP connects, no ServerHello ever comes: the client is closed within connectTimeoutMS
    and the session goes entirely (mongotap drains and exits 0 at teardown)."""
    with StalledUpstream() as stalled:
        tap = mongotap("--upstream", tls_upstream(stalled.address, certs,
                                                  extra="&connectTimeoutMS=500"), upstream=None)
        for _ in range(3):
            with helpers.raw_connect(tap.host, tap.port) as s:
                s.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}))
                elapsed, data = helpers.wait_closed(s, 5)
                assert data == b"" and elapsed < 4, (elapsed, data)
        assert tap.wait_for_log(r"closed: upstream localhost:\d+ connect: timed out", 5), \
            tap.logs()
        wait_idle = time.monotonic() + 10
        while tap.get_json("/api/stats")["connections"]["active"] != 0:
            assert time.monotonic() < wait_idle, "sessions left behind"
            time.sleep(0.05)
        assert tap.stop() == 0


def test_plaintext_client_on_the_tls_listener(mongotap, certs):
    # an upstream that accepts and stays silent: the handshake is the only reason to close
    with StalledUpstream() as stalled:
        tap = tls_tap(mongotap, certs, stalled.address)
        host, port = tap.tls_listen[0]
        with helpers.raw_connect(host, port) as s:
            s.sendall(helpers.op_msg({"ping": 1, "$db": "admin"}))
            _, data = helpers.wait_closed(s, 5)
    assert not data.startswith(b"\x16"), "no handshake for a client that does not speak TLS"
    assert tap.wait_for_log(r"closed: client TLS handshake failed: client does not speak TLS: "
                            r"connect with tls=true, or to a --listen address", 5), tap.logs()
    assert counters(tap)["client_handshake_failures"] == 1


def test_tls_client_on_a_plaintext_listener(mongotap, certs, jongodb):
    tap = mongotap()
    uri = "mongodb://%s:%d/?tls=true&tlsCAFile=%s&directConnection=true" % (
        tap.host, tap.port, cert(certs, "ca.pem"))
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=1500) as c:
        with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
            c.admin.command("ping")
    assert tap.wait_for_log(r"warn .*closed: client speaks TLS: start mongotap with "
                            r"--tls-listen/--tls-cert/--tls-key, or connect without tls=true",
                            5), tap.logs()
    assert counters(tap)["client_hello_on_plain_listener"] >= 1
    # nothing of the ClientHello went upstream, and plaintext clients still work
    with helpers.raw_connect(tap.host, tap.port) as s:
        assert helpers.raw_ping(s)["ok"] == 1.0
    assert tap.get_json("/api/stats")["protocol_errors"] == 0


def test_tls_listener_files_are_checked_at_start(certs):
    args = [helpers.mongotap_bin(), "--listen", "127.0.0.1:0", "--admin", "off",
            "--tls-listen", "127.0.0.1:0", "--tls-cert", cert(certs, "server.pem"),
            "--tls-key", cert(certs, "client.key")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    assert "does not match the certificate" in r.stderr, r.stderr
    r = subprocess.run([helpers.mongotap_bin(), "--listen", "127.0.0.1:0", "--admin", "off",
                        "--upstream", "mongodb://h/?tls=true&tlsCAFile=/nonexistent/ca.pem"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "tlsCAFile /nonexistent/ca.pem" in r.stderr, r.stderr
    r = subprocess.run([helpers.mongotap_bin(), "--upstream", "mongodb://u:p@h/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "user name and password" in r.stderr, r.stderr
    assert "p@h" not in r.stderr.split("--upstream:")[-1]
