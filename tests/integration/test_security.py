"""Security of the admin endpoint and of user data: where the admin API listens and what it warns
about, bearer-token checks on every route, no user data value in any log, finding, report or API
answer unless --log-values, and an HTTP server that refuses oversized requests."""

import http.client
import json
import re
import socket
import subprocess

import mongoengine as me
import pymongo
import pytest
from pymongo.errors import OperationFailure

import helpers
from faults import procinfo

TOKEN = "tok-7f3a9c1e5b2d4068a1c3e5f7092b4d6f"
SECRET = "s3cr3t-value-XYZ"

WARN_RE = r"admin endpoint on \S+ is not loopback and has no --admin-token"

# every route but /healthz and the console page, with the method it answers to
GUARDED = [("GET", "/metrics"), ("GET", "/api/stats"), ("GET", "/api/stats?limit=5"),
           ("GET", "/api/connections"), ("GET", "/api/windows"), ("GET", "/api/findings"),
           ("GET", "/api/report"), ("GET", "/api/report?format=markdown"),
           ("GET", "/api/report?format=html"), ("GET", "/events"), ("POST", "/api/reset"),
           ("GET", "/no-such-route"), ("GET", "/healthz/../api/stats")]


request = helpers.admin_request


# --- where the admin endpoint listens ------------------------------------------------------------

def test_admin_defaults_to_loopback_and_warns_when_exposed(mongotap):
    out = subprocess.run([helpers.mongotap_bin(), "--help"], capture_output=True, text=True,
                         timeout=10)
    assert re.search(r"--admin HOST:PORT\|off\s+HTTP admin endpoint \(default 127\.0\.0\.1:27080\)",
                     out.stdout), out.stdout

    exposed = mongotap("--admin", "0.0.0.0:0")
    assert exposed.wait_for_log(WARN_RE, 5), exposed.logs()
    assert exposed.stop() == 0

    for args in (("--admin", "0.0.0.0:0", "--admin-token", TOKEN), ("--admin", "127.0.0.1:0"),
                 ("--admin", "127.0.0.9:0")):
        tap = mongotap(*args)
        assert tap.get("/healthz")[0] == 200
        assert tap.stop() == 0
        assert not re.search(WARN_RE, tap.logs()), (args, tap.logs())

    # the token can come from the environment, out of sight of `ps`
    tap = mongotap("--admin", "0.0.0.0:0", env={"MONGOTAP_ADMIN_TOKEN": TOKEN})
    assert request(tap, "GET", "/api/stats")[0] == 401
    assert request(tap, "GET", "/api/stats", {"Authorization": "Bearer " + TOKEN})[0] == 200
    assert tap.stop() == 0
    assert not re.search(WARN_RE, tap.logs()), tap.logs()


# --- the bearer token -----------------------------------------------------------------------------

@pytest.fixture
def guarded(mongotap):
    return mongotap("--admin-token", TOKEN)


BAD_AUTH = {
    "none": None,
    "wrong, same length": "Bearer " + "x" * len(TOKEN),
    "one byte off": "Bearer " + TOKEN[:-1] + ("0" if TOKEN[-1] != "0" else "1"),
    "prefix": "Bearer " + TOKEN[:-1],
    "longer": "Bearer " + TOKEN + "0",
    "empty": "Bearer ",
    "scheme only": "Bearer",
    "basic scheme": "Basic " + TOKEN,
    "no scheme": TOKEN,
    "token with NUL after": "Bearer " + TOKEN + "\x00",
}


@pytest.mark.parametrize("method,path", GUARDED)
def test_every_admin_route_needs_the_token(guarded, method, path):
    tap = guarded
    body = b"" if method == "POST" else None
    post = helpers.POST_HEADERS if method == "POST" else {}
    for label, value in BAD_AUTH.items():
        headers = dict(post, Authorization=value) if value is not None else dict(post)
        try:
            status, hdrs, data = request(tap, method, path, headers, body)
        except (http.client.HTTPException, OSError) as e:
            # a header value the HTTP parser refuses outright is a refusal too
            assert label == "token with NUL after", (label, e)
            continue
        assert status in (400, 401), (label, path, status, data[:200])
        if status == 401:
            assert "Bearer" in hdrs.get("WWW-Authenticate", hdrs.get("www-authenticate", "")), hdrs
            assert json.loads(data)["status"] == 401
    # the token in the query string is not a token
    assert request(tap, method, path + ("&" if "?" in path else "?") + "token=" + TOKEN,
                   dict(post), body)[0] == 401
    status, _, data = request(tap, method, path, dict(post, Authorization="Bearer " + TOKEN),
                              body)
    expected = 404 if path == "/no-such-route" else 200
    assert status == expected, (path, status, data[:300])
    if path == "/events":
        assert data.startswith(b"event: stats\n"), data[:200]
    # scheme names are case-insensitive (RFC 9110)
    assert request(tap, method, path, dict(post, Authorization="bearer " + TOKEN),
                   body)[0] == expected


def test_open_routes_need_no_token_and_hold_no_data(guarded, dbname):
    assert request(guarded, "GET", "/healthz")[0] == 200
    assert request(guarded, "GET", "/healthz", {"Authorization": "Bearer nope"})[0] == 200
    # the console page loads without the token (it asks for one), so it must be static: the
    # same bytes with or without the token, before and after traffic
    with pymongo.MongoClient(guarded.uri(dbname)) as c:
        c[dbname]["seen"].insert_one({"_id": 1})
    status, _, anonymous = request(guarded, "GET", "/")
    status2, _, authorized = request(guarded, "GET", "/", {"Authorization": "Bearer " + TOKEN})
    assert status == status2 == 200
    assert anonymous == authorized
    assert dbname.encode() not in anonymous


# --- user data values stay out of every output ----------------------------------------------------

class Owner(me.Document):
    id = me.StringField(primary_key=True)
    label = me.StringField()
    meta = {"collection": "owner"}


class Pet(me.Document):
    name = me.StringField()
    owner = me.ReferenceField(Owner)
    meta = {"collection": "pet"}


def secret_workload(uri, dbname):
    """Plants SECRET in stored values, filters, a lazy N+1 (mongoengine and pymongo) and
    failing commands. Returns how many lookups the N+1 loops made."""
    lookups = 0
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000) as c:
        db = c[dbname]
        db.users.insert_one({"_id": SECRET + "-user-1", "email": SECRET + "@example.com",
                             "nested": {"token": SECRET, "list": [SECRET, 1]}})
        assert db.users.find_one({"email": SECRET + "@example.com"})["_id"] == SECRET + "-user-1"
        list(db.users.find({"nested.token": {"$in": [SECRET, SECRET + "2"]}}))
        list(db.users.aggregate([{"$match": {"email": {"$regex": "^" + SECRET}}}]))
        db.users.update_one({"_id": SECRET + "-user-1"}, {"$set": {"note": SECRET}})
        list(db.users.find({"email": SECRET}).comment(SECRET))
        # pymongo N+1: one find of the parents, then one find per parent's account
        db.accounts.insert_many([{"_id": "%s-acct-%d" % (SECRET, i)} for i in range(8)])
        db.orders.insert_many([{"_id": i, "account": "%s-acct-%d" % (SECRET, i)}
                               for i in range(8)])
        for order in list(db.orders.find({})):
            db.accounts.find_one({"_id": order["account"]})
            lookups += 1
        # failing commands whose error messages carry the value
        with pytest.raises(OperationFailure):
            db.users.insert_one({"_id": SECRET + "-user-1"})
        with pytest.raises(OperationFailure):
            list(db.users.find({"email": {"$regex": SECRET, "$options": "\u00e9"}}))
        with pytest.raises(OperationFailure):
            list(db.users.find({"email": {"$bogus": SECRET}}))
        with pytest.raises(OperationFailure):
            list(db.users.aggregate([{"$match": {"email": SECRET}}, {"$bogusStage": SECRET}]))
        with pytest.raises(OperationFailure):
            db.command({"insert": "users", "documents": [{"_id": SECRET + "-dup"},
                                                         {"_id": SECRET + "-dup"}]})

    # mongoengine: Pet.owner is a lazy reference, dereferenced one query per pet
    me.disconnect(alias="default")
    me.connect(host=uri, alias="default", serverSelectionTimeoutMS=10000,
               uuidRepresentation="standard")
    try:
        for i in range(8):
            Owner(id="%s-owner-%d" % (SECRET, i), label=SECRET).save()
        for i in range(8):
            Pet(name="%s-pet-%d" % (SECRET, i), owner=Owner.objects.get(id="%s-owner-%d"
                                                                       % (SECRET, i))).save()
        for pet in Pet.objects.order_by("name"):
            assert pet.owner.label == SECRET
            lookups += 1
    finally:
        me.disconnect(alias="default")
    return lookups


ROUTES = ["/api/stats?limit=1000", "/api/connections", "/api/windows?limit=1000",
          "/api/findings", "/api/report?format=json", "/api/report?format=markdown",
          "/api/report?format=html", "/metrics", "/events", "/"]


def secret_forms():
    raw = SECRET.encode()
    return [raw, raw[:6], raw.hex().encode(), raw.hex().upper().encode(),
            " ".join("%02x" % b for b in raw).encode()]


def leaks(text):
    return [f for f in secret_forms() if f in text]


def test_user_values_never_leak(mongotap, dbname, tmp_path):
    findings = tmp_path / "findings.jsonl"
    report = tmp_path / "report.json"
    tap = mongotap("--log-level", "debug", "--findings-log", findings, "--report", report)
    lookups = secret_workload(tap.uri(dbname), dbname)
    assert lookups == 16
    # both N+1 loops become findings once their windows close
    assert procinfo.wait_until(lambda: len(tap.get_json("/api/findings")["findings"]) >= 2, 10), \
        tap.get_json("/api/findings")
    outputs = {}
    for route in ROUTES:
        status, _, body = request(tap, "GET", route)
        assert status == 200, route
        outputs[route] = body
    assert tap.stop() == 0
    outputs["stderr"] = tap.logs().encode()
    outputs["--findings-log"] = findings.read_bytes()
    outputs["--report"] = report.read_bytes()

    found = {name: leaks(text) for name, text in outputs.items() if leaks(text)}
    assert not found, "user data in outputs: %r" % found
    # the outputs did describe the workload (a test of an empty report proves nothing)
    assert len(outputs["--findings-log"].splitlines()) >= 2
    assert b"accounts" in outputs["--report"] and b"owner" in outputs["--report"]
    assert re.search(rb"debug", outputs["stderr"])
    print("no value leaked into %d outputs (%d bytes searched)"
          % (len(outputs), sum(map(len, outputs.values()))))


def test_log_values_still_runs(mongotap, dbname, tmp_path):
    findings = tmp_path / "findings.jsonl"
    tap = mongotap("--log-values", "--log-level", "debug", "--findings-log", findings)
    secret_workload(tap.uri(dbname), dbname)
    assert procinfo.wait_until(lambda: tap.get_json("/api/findings")["findings"], 10)
    shown = sum(1 for r in ROUTES if SECRET.encode() in request(tap, "GET", r)[2])
    assert tap.stop() == 0
    print("--log-values: the value appears in %d of %d admin routes, findings log: %s"
          % (shown, len(ROUTES), SECRET.encode() in findings.read_bytes()))


# --- oversized requests ---------------------------------------------------------------------------

def raw_http(tap, data, timeout=5):
    """Sends data to the admin port; returns (status or None if closed without one, seconds)."""
    with socket.create_connection(tap.admin, timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        reply = b""
        try:
            while b"\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("what", ["header-line-100k", "headers-2000", "url-100k"])
def test_oversized_request_heads_are_refused(mongotap, what):
    tap = mongotap()
    if what == "header-line-100k":
        req = b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    elif what == "headers-2000":
        req = (b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n")
    else:
        req = b"GET /api/stats?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    status = raw_http(tap, req)
    assert status is None or 400 <= status < 500, status
    assert request(tap, "GET", "/healthz")[0] == 200
    assert tap.running()
    print("%s: %s" % (what, "closed" if status is None else status))


@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
def test_oversized_body_is_refused_and_does_nothing(mongotap, dbname, encoding):
    tap = mongotap()
    with pymongo.MongoClient(tap.uri(dbname)) as c:
        c[dbname]["x"].insert_one({"_id": 1})
        assert c[dbname]["x"].find_one({"_id": 1}) == {"_id": 1}
    before = tap.get_json("/api/stats")
    assert before["commands"] > 0
    size = 10 * 1024 * 1024
    if encoding == "content-length":
        head = (b"POST /api/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Mongotap: 1\r\n"
                b"Content-Length: %d\r\n\r\n" % size)
        body = b"z" * size
    else:
        head = (b"POST /api/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Mongotap: 1\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"z" * 65536
        body = (b"%x\r\n" % len(piece) + piece + b"\r\n") * (size // len(piece)) + b"0\r\n\r\n"
    status = raw_http(tap, head + body, timeout=10)
    assert status is None or status == 413 or 400 <= status < 500, status
    after = tap.get_json("/api/stats")
    # the reset did not happen
    assert after["commands"] >= before["commands"], (before["commands"], after["commands"])
    assert request(tap, "GET", "/healthz")[0] == 200
    # a well-formed reset still works
    assert request(tap, "POST", "/api/reset", helpers.POST_HEADERS, body=b"")[0] == 200
    assert tap.get_json("/api/stats")["commands"] < before["commands"]
    assert request(tap, "GET", "/api/reset")[0] == 405
    print("10 MB body (%s): %s" % (encoding, "closed" if status is None else status))
