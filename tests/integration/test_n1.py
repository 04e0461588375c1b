"""N+1 detection end to end: real drivers (mongoengine, pymongo, the Node.js driver, mongoose) run
the classic lazy-reference listings and their fixed versions through mongotap against jongodb, and
the findings API, the findings log and `mongotap report` must say exactly what SPEC §5 promises:
one finding per N+1 with the right parent, children and field, none for the traps."""

import calendar
import json
import re
import subprocess
import threading
import time

import pytest
from bson import DBRef, ObjectId
from pymongo import monitoring
from mongoengine import Document, ReferenceField, StringField, connect, disconnect

import helpers
from findings_util import ADDR_RE, FINDING_KEYS, GAP_MS, ISO_RE, assert_no_values, tap_client
from lazy_scenario import seed_guide

WAIT_S = 5  # bound on every poll of the admin API


# --- helpers -----------------------------------------------------------------------------------

def closed_windows(tap):
    return tap.get_json("/api/windows?limit=100")["windows"]


def wait_closed(tap, expect, timeout=WAIT_S):
    """Waits until the closed windows hold at least expect[collection] commands on each named
    collection (so they have been analysed); returns the closed windows."""
    deadline = time.monotonic() + timeout
    while True:
        windows = closed_windows(tap)
        got = {}
        for w in windows:
            for c in w["commands"]:
                got[c["collection"]] = got.get(c["collection"], 0) + 1
        if all(got.get(coll, 0) >= n for coll, n in expect.items()):
            return windows
        if time.monotonic() > deadline:
            raise AssertionError("closed windows hold %r, expected at least %r within %ss:\n%s"
                                 % (got, expect, timeout, json.dumps(windows)[:3000]))
        time.sleep(0.05)


def settled_findings(tap, expect):
    """/api/findings once the windows holding the expect commands are closed and analysed."""
    wait_closed(tap, expect)
    return tap.get_json("/api/findings")


def only_finding(doc, type="n_plus_one"):
    """The one finding of that type (lookups of few values asked many times are also repeated
    reads, SPEC 5a, which the N+1 tests set aside)."""
    found = [f for f in doc["findings"] if f["type"] == type]
    assert len(found) == 1, json.dumps(doc, indent=1)
    return found[0]


def of_type(doc, type):
    return [f for f in doc["findings"] if f["type"] == type]


def seed_posts(seed, db, n_posts=30, n_users=10, id_kind="oid"):
    """users with n_users documents, posts (n_posts) each naming its author in author_id."""
    if id_kind == "oid":
        user_ids = [ObjectId() for _ in range(n_users)]
    else:
        user_ids = list(range(1, n_users + 1))
    seed[db].users.insert_many([{"_id": u, "name": "user %d" % i} for i, u in enumerate(user_ids)])
    seed[db].posts.insert_many([{"_id": ObjectId(), "title": "post %d" % i,
                                 "author_id": user_ids[i % n_users]} for i in range(n_posts)])
    return user_ids


def posts_loop(client, db, lookups=None, find_kw=None, lookup_kw=None):
    """The hand-written N+1: list the posts, then find_one each post's author by _id."""
    posts = list(client[db].posts.find({}, **(find_kw or {})))
    names = []
    for post in posts[:lookups]:
        user = client[db].users.find_one({"_id": post["author_id"]}, **(lookup_kw or {}))
        names.append(user["name"])
    return posts, names


# --- 1. mongoengine lazy ReferenceField ----------------------------------------------------------

ME_ALIAS = "mongotap_n1"


class N1Channel(Document):
    name = StringField(required=True)
    meta = {"collection": "channel", "db_alias": ME_ALIAS, "auto_create_index": False}


class N1Show(Document):
    title = StringField(required=True)
    channel = ReferenceField(N1Channel)
    meta = {"collection": "show", "db_alias": ME_ALIAS, "auto_create_index": False}


def list_guide(uri, related):
    connect(host=uri, alias=ME_ALIAS, uuidRepresentation="standard")
    try:
        shows = N1Show.objects
        if related:
            shows = shows.select_related()
        names = [show.channel.name for show in shows]
    finally:
        disconnect(alias=ME_ALIAS)
    assert len(names) == 50 and len(set(names)) == 20, names
    return names


def test_mongoengine_lazy_reference_is_one_high_confidence_finding(mongotap, seed, dbname):
    channels = seed_guide(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    list_guide(tap.uri(dbname), related=False)
    doc = settled_findings(tap, {"show": 1, "channel": 50})
    f = only_finding(doc)

    assert FINDING_KEYS <= set(f), sorted(f)
    assert f["schema"] == "mongotap.finding/1"
    assert re.match(r"^f-\d{6}$", f["id"]), f["id"]
    assert f["type"] == "n_plus_one"
    assert ISO_RE.match(f["detected_at"]), f["detected_at"]
    assert f["confidence"] == "high"
    assert f["field"] == "channel"
    assert f["matched"] == 50

    assert set(f["client"]) >= {"addr", "app_name", "driver"}
    assert ADDR_RE.match(f["client"]["addr"]), f["client"]
    assert f["client"]["driver"].startswith("PyMongo"), f["client"]

    w = f["window"]
    assert set(w) >= {"id", "connection_id", "key", "started_at", "duration_ms", "commands"}, w
    assert isinstance(w["id"], int) and isinstance(w["connection_id"], int), w
    assert w["key"] is None
    assert ISO_RE.match(w["started_at"]), w
    assert isinstance(w["duration_ms"], (int, float)) and w["duration_ms"] > 0, w
    assert w["commands"] == 51, w  # the find on show and one find per show

    p = f["parent"]
    assert (p["db"], p["collection"], p["command"], p["shape"], p["docs_returned"]) == \
        (dbname, "show", "find", "{}", 50), p
    assert p["duration_ms"] >= 0
    c = f["children"]
    assert (c["db"], c["collection"], c["command"], c["key"]) == (dbname, "channel", "find", "_id"), c
    assert json.loads(c["shape"]) == {"_id": "?"}, c
    assert (c["count"], c["distinct_values"]) == (50, 20), c
    assert c["duration_ms"] > 0, c
    assert "select_related()" in f["suggestion"], f["suggestion"]
    assert_no_values(f, channels[:3])

    # The window the finding names is the closed window that holds those 51 commands.
    win = [x for x in closed_windows(tap) if x["id"] == w["id"]]
    assert len(win) == 1 and win[0]["findings"] == 1, win
    assert win[0]["connection_id"] == w["connection_id"]

    # A second listing (another connection, another window) is the same pattern, counted twice.
    list_guide(tap.uri(dbname), related=False)
    doc = settled_findings(tap, {"show": 2, "channel": 100})
    assert len(doc["findings"]) == 2, doc
    assert doc["findings"][0]["window"]["id"] != doc["findings"][1]["window"]["id"]
    assert len(doc["patterns"]) == 1, doc["patterns"]
    pat = doc["patterns"][0]
    assert pat["occurrences"] == 2, pat
    assert pat["children"]["count"] == 100, pat
    assert pat["field"] == "channel" and pat["confidence"] == "high", pat
    assert (pat["parent"]["collection"], pat["children"]["collection"]) == ("show", "channel"), pat
    assert pat["example_finding"] in {x["id"] for x in doc["findings"]}, pat

    status, _, body = tap.get("/api/report?format=markdown")
    assert status == 200
    md = body.decode().replace("\\_", "_")  # markdown escapes underscores
    for word in ("show", "channel", "select_related"):
        assert word in md, (word, md[:3000])


def test_mongoengine_select_related_is_no_finding(mongotap, seed, dbname):
    seed_guide(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    list_guide(tap.uri(dbname), related=True)
    windows = wait_closed(tap, {"show": 1, "channel": 1})
    lookups = [c for w in windows for c in w["commands"] if c["collection"] == "channel"]
    # select_related() loads the 20 channels with one $in query, not one find per show.
    assert len(lookups) == 1 and lookups[0]["docs"] == 20, lookups
    assert "$in" in lookups[0]["shape"], lookups
    assert tap.get_json("/api/findings") == {"findings": [], "patterns": []}


# --- 2, 3. pymongo loops -----------------------------------------------------------------------

@pytest.mark.parametrize("id_kind", ["oid", "int"])
def test_pymongo_loop_by_id(mongotap, seed, dbname, id_kind):
    user_ids = seed_posts(seed, dbname, n_posts=30, n_users=10, id_kind=id_kind)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-posts") as client:
        posts, names = posts_loop(client, dbname)
    assert len(posts) == 30 and len(set(names)) == 10
    f = only_finding(settled_findings(tap, {"posts": 1, "users": 30}))
    assert f["confidence"] == "high" and f["field"] == "author_id", f
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("posts", 30), f
    c = f["children"]
    assert (c["collection"], c["key"], c["count"], c["distinct_values"]) == \
        ("users", "_id", 30, 10), c
    assert json.loads(c["shape"]) == {"_id": "?"}
    assert f["matched"] == 30
    assert f["client"]["app_name"] == "n1-posts"
    assert f["client"]["driver"].startswith("PyMongo"), f["client"]
    assert "$in" in f["suggestion"], f["suggestion"]
    if id_kind == "oid":
        assert_no_values(f, user_ids[:3])


def test_pymongo_loop_by_other_key(mongotap, seed, dbname):
    emails = ["customer%d@example.com" % i for i in range(8)]
    seed[dbname].customers.insert_many([{"_id": ObjectId(), "email": e, "name": "c%d" % i}
                                        for i, e in enumerate(emails)])
    seed[dbname].orders.insert_many([{"_id": ObjectId(), "total": i, "customer_email": emails[i % 8]}
                                     for i in range(24)])
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-orders") as client:
        orders = list(client[dbname].orders.find({"total": {"$gte": 0}}))
        found = [client[dbname].customers.find_one({"email": o["customer_email"]}) for o in orders]
    assert len(orders) == 24 and all(found)
    f = only_finding(settled_findings(tap, {"orders": 1, "customers": 24}))
    assert f["confidence"] == "high" and f["field"] == "customer_email", f
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("orders", 24), f
    assert json.loads(f["parent"]["shape"]) == {"total": {"$gte": "?"}}, f["parent"]
    c = f["children"]
    assert (c["collection"], c["key"], c["count"], c["distinct_values"]) == \
        ("customers", "email", 24, 8), c
    assert json.loads(c["shape"]) == {"email": "?"}
    assert_no_values(f, emails)


def test_pymongo_loop_by_nested_field(mongotap, seed, dbname):
    seed[dbname].customers.insert_many([{"_id": 500 + i, "name": "c%d" % i} for i in range(6)])
    seed[dbname].orders.insert_many([{"_id": ObjectId(), "total": i,
                                      "customer": {"id": 500 + i % 6, "tier": "gold"}}
                                     for i in range(18)])
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-nested") as client:
        orders = list(client[dbname].orders.find())
        found = [client[dbname].customers.find_one({"_id": o["customer"]["id"]}) for o in orders]
    assert len(orders) == 18 and all(found)
    f = only_finding(settled_findings(tap, {"orders": 1, "customers": 18}))
    assert f["confidence"] == "high" and f["field"] == "customer.id", f
    assert (f["children"]["key"], f["children"]["count"], f["children"]["distinct_values"]) == \
        ("_id", 18, 6), f["children"]
    assert f["matched"] == 18


# Other spellings of a single-key lookup (SPEC §5) and where the key may sit in the parent
# documents; "lookup" receives (collection, value), "parent" the db and returns the documents.
LOOKUP_FORMS = {
    "eq": lambda coll, v: coll.find_one({"_id": {"$eq": v}}),
    "in-one": lambda coll, v: next(coll.find({"_id": {"$in": [v]}})),
    "aggregate-match": lambda coll, v: next(coll.aggregate([{"$match": {"_id": v}}])),
}


@pytest.mark.parametrize("form", sorted(LOOKUP_FORMS))
def test_other_single_key_lookup_forms(mongotap, seed, dbname, form):
    seed[dbname].customers.insert_many([{"_id": 100 + i, "name": "c%d" % i} for i in range(6)])
    seed[dbname].orders.insert_many([{"_id": i, "customer_id": 100 + i % 6} for i in range(12)])
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-forms") as client:
        orders = list(client[dbname].orders.aggregate([{"$sort": {"_id": 1}}]))
        for o in orders:
            assert LOOKUP_FORMS[form](client[dbname].customers, o["customer_id"])
    f = only_finding(settled_findings(tap, {"orders": 1, "customers": 12}))
    assert (f["parent"]["command"], f["parent"]["docs_returned"]) == ("aggregate", 12), f
    assert (f["children"]["key"], f["children"]["count"], f["children"]["distinct_values"]) == \
        ("_id", 12, 6), f["children"]
    assert f["field"] == "customer_id" and f["confidence"] == "high", f


def test_references_in_arrays_and_dbrefs(mongotap, seed, dbname):
    ids = [ObjectId() for _ in range(8)]
    seed[dbname].tags.insert_many([{"_id": t, "label": "t%d" % i} for i, t in enumerate(ids)])
    seed[dbname].notes.insert_many([{"_id": i, "meta": {"tags": [ids[i % 8], ids[(i + 3) % 8]]},
                                     "owner": DBRef("tags", ids[(i + 5) % 8])} for i in range(10)])
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-arrays") as client:
        notes = list(client[dbname].notes.find())
        for n in notes:
            for t in n["meta"]["tags"]:
                assert client[dbname].tags.find_one({"_id": t})
    with tap_client(tap, "n1-dbrefs") as client:  # another connection: another window
        notes = list(client[dbname].notes.find())
        for n in notes:
            assert client[dbname].tags.find_one({"_id": n["owner"].id})
    doc = settled_findings(tap, {"notes": 2, "tags": 30})
    assert len(doc["findings"]) == 2, doc
    by_field = {f["field"]: f for f in doc["findings"]}
    assert set(by_field) == {"meta.tags", "owner"}, doc["findings"]
    assert by_field["meta.tags"]["children"]["count"] == 20
    assert by_field["owner"]["children"]["count"] == 10
    assert len(doc["patterns"]) == 2, doc["patterns"]


def test_lookups_that_are_not_single_key_are_no_finding(mongotap, seed, dbname):
    seed_posts(seed, dbname, n_posts=20, n_users=5)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-not-single") as client:
        posts = list(client[dbname].posts.find())
        for p in posts:  # limit 2: may return more than one document
            assert list(client[dbname].users.find({"_id": p["author_id"]}).limit(2))
        for p in posts:  # two conditions
            assert client[dbname].users.find_one({"_id": p["author_id"], "name": {"$ne": None}})
    assert settled_findings(tap, {"posts": 1, "users": 40})["findings"] == []


# --- 4. Node.js driver and mongoose ------------------------------------------------------------

def seed_books(seed, db, n_books=20, n_authors=7):
    seed[db].authors.insert_many([{"_id": i, "name": "author %d" % i} for i in range(n_authors)])
    seed[db].books.insert_many([{"_id": i, "title": "book %d" % i, "authorId": i % n_authors}
                                for i in range(n_books)])


def run_node(script, *args):
    out = helpers.run_node(script, *args)
    assert out["books"] == 20 and None not in out["names"], out
    return out


def test_node_driver_findone_loop(mongotap, seed, dbname):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    run_node("n1_loop.mjs", tap.uri(dbname), dbname, "loop")
    f = only_finding(settled_findings(tap, {"books": 1, "authors": 20}))
    assert f["client"]["driver"].startswith("nodejs"), f["client"]
    assert f["client"]["app_name"] == "mongotap-n1-node"
    assert f["confidence"] == "high" and f["field"] == "authorId", f
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("books", 20)
    c = f["children"]
    assert (c["collection"], c["key"], c["count"], c["distinct_values"]) == \
        ("authors", "_id", 20, 7), c
    assert "$in" in f["suggestion"] and "$lookup" in f["suggestion"], f["suggestion"]
    assert "select_related" not in f["suggestion"], f["suggestion"]


def test_node_driver_in_query_is_no_finding(mongotap, seed, dbname):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    run_node("n1_loop.mjs", tap.uri(dbname), dbname, "in")
    windows = wait_closed(tap, {"books": 1, "authors": 1})
    lookups = [c for w in windows for c in w["commands"] if c["collection"] == "authors"]
    assert len(lookups) == 1 and lookups[0]["docs"] == 7, lookups
    assert tap.get_json("/api/findings")["findings"] == []


def test_mongoose_populate_per_document(mongotap, seed, dbname):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    run_node("n1_mongoose.mjs", tap.uri(dbname), "perdoc")
    f = only_finding(settled_findings(tap, {"books": 1, "authors": 20}))
    assert "Mongoose" in f["client"]["driver"], f["client"]
    assert f["confidence"] == "high" and f["field"] == "authorId", f
    c = f["children"]
    # mongoose's per-document populate() sends {_id: {$in: [id]}} with one element.
    assert json.loads(c["shape"]) == {"_id": {"$in": ["?"]}}, c
    assert (c["key"], c["count"], c["distinct_values"]) == ("_id", 20, 7), c
    assert "populate(" in f["suggestion"] and "on the query" in f["suggestion"], f["suggestion"]


def test_mongoose_populate_on_the_query_is_no_finding(mongotap, seed, dbname):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    run_node("n1_mongoose.mjs", tap.uri(dbname), "query")
    windows = wait_closed(tap, {"books": 1, "authors": 1})
    lookups = [c for w in windows for c in w["commands"] if c["collection"] == "authors"]
    # Same shape as the per-document lookups, but one query with all seven ids.
    assert len(lookups) == 1 and lookups[0]["docs"] == 7, lookups
    assert json.loads(lookups[0]["shape"]) == {"_id": {"$in": ["?"]}}
    assert tap.get_json("/api/findings")["findings"] == []


# --- 5. traps ----------------------------------------------------------------------------------

def test_lookups_without_a_parent_are_no_finding(mongotap, seed, dbname):
    user_ids = seed_posts(seed, dbname, n_posts=5, n_users=10)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-noparent") as client:
        for i in range(50):
            assert client[dbname].users.find_one({"_id": user_ids[i % 10]})
    windows = wait_closed(tap, {"users": 50})
    assert sum(len(w["commands"]) for w in windows) == 50, windows
    doc = tap.get_json("/api/findings")
    assert of_type(doc, "n_plus_one") == [], doc
    # each of the 10 users was read 5 times with the same filter: repeated reads, not an N+1
    assert len(of_type(doc, "repeated_read")) == 10, doc


def test_lookups_below_the_threshold_are_no_finding(mongotap, seed, dbname):
    seed_posts(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "n1-four") as client:
        posts_loop(client, dbname, lookups=4)
    assert settled_findings(tap, {"posts": 1, "users": 4})["findings"] == []
    # The boundary: five lookups (the default threshold) after the same parent are a finding.
    with tap_client(tap, "n1-five") as client:
        posts_loop(client, dbname, lookups=5)
    f = only_finding(settled_findings(tap, {"posts": 2, "users": 9}))
    assert f["client"]["app_name"] == "n1-five" and f["children"]["count"] == 5, f


def test_parent_and_lookups_split_by_an_idle_gap_are_no_finding(mongotap, seed, dbname):
    gap_ms = 200
    seed_posts(seed, dbname)
    tap = mongotap("--window-gap-ms", gap_ms)
    with tap_client(tap, "n1-split") as client:
        posts = list(client[dbname].posts.find())
        time.sleep(3 * gap_ms / 1000.0)  # the idle gap is the scenario here
        for post in posts:
            assert client[dbname].users.find_one({"_id": post["author_id"]})
    windows = wait_closed(tap, {"posts": 1, "users": 30})
    holding = {w["id"]: {c["collection"] for c in w["commands"]} for w in windows}
    parent_win = [i for i, colls in holding.items() if "posts" in colls]
    child_win = [i for i, colls in holding.items() if "users" in colls]
    assert len(parent_win) == 1 and parent_win != child_win, holding
    assert tap.get_json("/api/findings")["findings"] == []


# --- 6. concurrent connections -----------------------------------------------------------------

def test_concurrent_connections_keep_their_own_windows(mongotap, seed, dbname):
    user_ids = seed_posts(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    loop_client = tap_client(tap, "n1-loop")
    noise_client = tap_client(tap, "n1-noise")
    try:
        start = threading.Barrier(2, timeout=10)
        errors = []

        def n_plus_one():
            try:
                start.wait()
                posts_loop(loop_client, dbname)
            except Exception as e:  # reported below, in the main thread
                errors.append(e)

        def noise():
            try:
                start.wait()
                for i in range(50):
                    assert noise_client[dbname].users.find_one({"_id": user_ids[(i * 7) % 10]})
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=n_plus_one), threading.Thread(target=noise)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors

        # Both clients are still connected: which connection belongs to which app?
        conns = tap.get_json("/api/connections")["connections"]
        by_app = {}
        for c in conns:
            by_app.setdefault(c["app_name"], {})[c["id"]] = c["client"]
        assert by_app.get("n1-loop") and by_app.get("n1-noise"), conns
    finally:
        loop_client.close()
        noise_client.close()

    windows = wait_closed(tap, {"posts": 1, "users": 80})
    doc = tap.get_json("/api/findings")
    f = only_finding(doc)
    assert f["window"]["connection_id"] in by_app["n1-loop"], (f["window"], by_app)
    assert f["window"]["connection_id"] not in by_app["n1-noise"]
    assert f["client"]["addr"] == by_app["n1-loop"][f["window"]["connection_id"]], (f, by_app)
    assert f["client"]["app_name"] == "n1-loop"
    assert (f["children"]["count"], f["parent"]["docs_returned"]) == (30, 30), f

    # The two windows really ran at the same time.
    spans = []
    for w in windows:
        if any(c["collection"] == "users" for c in w["commands"]):
            t0 = calendar.timegm(time.strptime(w["started_at"][:19], "%Y-%m-%dT%H:%M:%S"))
            t0 += int(w["started_at"][20:23]) / 1000.0
            spans.append((t0, t0 + w["duration_ms"] / 1000.0))
    assert len(spans) == 2, windows
    (a0, a1), (b0, b1) = spans
    assert a0 <= b1 and b0 <= a1, spans


# --- 7. parent read through getMore batches ----------------------------------------------------

class GetMoreCounter(monitoring.CommandListener):
    def __init__(self):
        self.getmores = 0

    def started(self, event):
        if event.command_name == "getMore":
            self.getmores += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_parent_read_in_getmore_batches(mongotap, seed, dbname):
    seed_posts(seed, dbname, n_posts=20, n_users=20)
    tap = mongotap("--window-gap-ms", GAP_MS)
    counter = GetMoreCounter()
    with tap_client(tap, "n1-batches", event_listeners=[counter]) as client:
        posts, names = posts_loop(client, dbname, find_kw={"batch_size": 3})
    assert len(posts) == 20
    assert counter.getmores >= 6, counter.getmores  # 3 in firstBatch, the rest in getMores
    f = only_finding(settled_findings(tap, {"posts": 1, "users": 20}))
    assert f["parent"]["docs_returned"] == 20, f["parent"]
    assert (f["children"]["count"], f["children"]["distinct_values"]) == (20, 20), f
    assert f["field"] == "author_id" and f["matched"] == 20, f


# --- 8. explicit request key across pooled connections -----------------------------------------

@pytest.mark.parametrize("mode", ["keyed", "keyed-batches", "unkeyed"])
def test_request_key_spans_connections(mongotap, seed, dbname, mode):
    seed_posts(seed, dbname, n_posts=20, n_users=5)
    tap = mongotap("--window-gap-ms", GAP_MS)
    kw = {"comment": "mongotap:req-7"} if mode != "unkeyed" else {}
    # Drivers do not repeat the comment on getMore: the batches still belong to the keyed window.
    batch = {"batch_size": 3} if mode == "keyed-batches" else {}
    with tap_client(tap, "n1-web-a") as a, tap_client(tap, "n1-web-b") as b:
        posts = list(a[dbname].posts.find({}, **kw, **batch))
        for post in posts:
            assert b[dbname].users.find_one({"_id": post["author_id"]}, **kw)
    doc = settled_findings(tap, {"posts": 1, "users": 20})
    if mode == "unkeyed":
        # Without the key each connection is its own window, and b's has no parent.
        assert doc["findings"] == [], doc
        return
    f = only_finding(doc)
    assert f["window"]["key"] == "mongotap:req-7", f["window"]
    assert f["window"]["commands"] >= 21, f["window"]
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("posts", 20), f
    assert f["children"]["collection"] == "users"
    assert (f["children"]["count"], f["children"]["distinct_values"]) == (20, 5)
    assert f["field"] == "author_id"


# --- 9. --n1-threshold -------------------------------------------------------------------------

def test_threshold_flag(mongotap, seed, dbname):
    seed_posts(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS, "--n1-threshold", 10)
    with tap_client(tap, "n1-eight") as client:
        posts_loop(client, dbname, lookups=8)
    assert settled_findings(tap, {"posts": 1, "users": 8})["findings"] == []
    # Twelve lookups, but after a parent of only eight documents: still below the threshold.
    with tap_client(tap, "n1-small-parent") as client:
        posts = list(client[dbname].posts.find().limit(8))
        for i in range(12):
            assert client[dbname].users.find_one({"_id": posts[i % 8]["author_id"]})
    assert settled_findings(tap, {"posts": 2, "users": 20})["findings"] == []
    with tap_client(tap, "n1-twelve") as client:
        posts_loop(client, dbname, lookups=12)
    f = only_finding(settled_findings(tap, {"posts": 3, "users": 32}))
    assert f["client"]["app_name"] == "n1-twelve", f
    assert (f["children"]["count"], f["parent"]["docs_returned"]) == (12, 30), f


# --- 10. findings log and `mongotap report` ----------------------------------------------------

def test_findings_log_and_report_command(mongotap, seed, dbname, tmp_path):
    seed_posts(seed, dbname)
    log = tmp_path / "findings.jsonl"
    tap = mongotap("--window-gap-ms", GAP_MS, "--findings-log", log)
    with tap_client(tap, "n1-log") as client:
        posts_loop(client, dbname)
    f = only_finding(settled_findings(tap, {"posts": 1, "users": 30}))

    # Written as found, while mongotap keeps running.
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0]) == f

    outputs = {}
    for fmt in ("json", "markdown", "html"):
        out = tmp_path / ("report." + fmt)
        r = subprocess.run([helpers.mongotap_bin(), "report", "--admin", tap.admin_url,
                            "--format", fmt, "-o", str(out)],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert r.returncode == 0, (fmt, r.stderr)
        outputs[fmt] = out.read_text()
    report = json.loads(outputs["json"])
    assert f["id"] in [x["id"] for x in report["findings"]], report["findings"]
    assert len(report["patterns"]) == 1, report["patterns"]
    pat = report["patterns"][0]
    assert (pat["parent"]["collection"], pat["children"]["collection"], pat["field"]) == \
        ("posts", "users", "author_id"), pat
    assert pat["occurrences"] == 1 and pat["children"]["count"] == 30, pat
    md = outputs["markdown"].replace("\\_", "_")
    assert "posts" in md and "users" in md and "author_id" in md, md[:3000]
    assert "|" in md
    html = outputs["html"]
    assert "<html" in html.lower() and "users" in html and "author_id" in html, html[:2000]

    # One more N+1 window appends one more line.
    with tap_client(tap, "n1-log-2") as client:
        posts_loop(client, dbname)
    settled_findings(tap, {"posts": 2, "users": 60})
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    second = json.loads(lines[1])
    assert second["client"]["app_name"] == "n1-log-2" and second["id"] != f["id"], second
