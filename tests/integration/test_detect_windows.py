"""The request windows of SPEC section 4 as the detectors need them, with real drivers against
jongodb through mongotap: a page whose first query carries a "mongotap:" comment and whose lazy
loads carry none, back-to-back page loads with no idle gap between them (one finding per page,
with the page's counts), and concurrent clients over one pymongo pool (one high-confidence
pattern per real N+1, no "field unknown" twin)."""

import json
import threading
import time

import pymongo
import pytest
from bson import ObjectId
from mongoengine import connect, disconnect

import helpers
from findings_util import (GAP_MS, assert_no_values, assert_warn_lines, findings_of,
                           only_finding, tap_client)
from lazy_scenario import ALIAS, LazyShow, seed_guide


def lazy_guide_pages(uri, pages, comment=None):
    """Lists the guide `pages` times over one connection, each show's channel loaded lazily
    (1 + 50 finds a page); the show query carries `comment` when given."""
    connect(host=uri, alias=ALIAS, uuidRepresentation="standard", maxPoolSize=1)
    try:
        for _ in range(pages):
            shows = LazyShow.objects
            if comment:
                shows = shows.comment(comment)
            names = [show.channel.name for show in shows]
            assert len(names) == 50 and len(set(names)) == 20, names
    finally:
        disconnect(alias=ALIAS)


def check_guide_finding(f, dbname):
    assert (f["parent"]["db"], f["parent"]["collection"], f["parent"]["docs_returned"]) == \
        (dbname, "show", 50), f["parent"]
    c = f["children"]
    assert (c["collection"], c["key"], c["count"], c["distinct_values"]) == \
        ("channel", "_id", 50, 20), c
    assert (f["confidence"], f["field"], f["matched"]) == ("high", "channel", 50), f


# --- 1. a tagged page query, lazy loads without a tag ------------------------------------------

def seed_posts(seed, db):
    users = [ObjectId() for _ in range(5)]
    seed[db].user.insert_many([{"_id": u, "name": "user %d" % i} for i, u in enumerate(users)])
    seed[db].post.insert_many([{"_id": ObjectId(), "author_id": users[i % 5]} for i in range(20)])
    return users


def test_pymongo_tagged_page_with_untagged_lookups(mongotap, seed, dbname):
    users = seed_posts(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "windows-tagged") as client:
        posts = list(client[dbname].post.find().comment("mongotap:req-41"))
        for p in posts:  # the lookups carry no comment, as an ODM's lazy loads do not
            assert client[dbname].user.find_one({"_id": p["author_id"]})
    f = only_finding(helpers.settled_findings(tap))
    assert f["window"]["key"] == "mongotap:req-41", f["window"]
    assert f["window"]["commands"] == 21, f["window"]
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("post", 20), f
    c = f["children"]
    assert (c["collection"], c["count"], c["distinct_values"]) == ("user", 20, 5), c
    assert (f["confidence"], f["field"]) == ("high", "author_id"), f
    assert_no_values(f, users)


def test_mongoengine_tagged_queryset_with_lazy_references(mongotap, seed, dbname):
    channels = seed_guide(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    lazy_guide_pages(tap.uri(dbname), 1, comment="mongotap:req-42")
    f = only_finding(helpers.settled_findings(tap))
    assert f["window"]["key"] == "mongotap:req-42", f["window"]
    assert f["window"]["commands"] == 51, f["window"]
    check_guide_finding(f, dbname)
    assert "select_related()" in f["suggestion"], f["suggestion"]
    assert_no_values(f, channels[:3])
    # the keyed window is listed with its commands, the lazy loads among them
    keyed = [w for w in tap.get_json("/api/windows?limit=100")["windows"]
             if w["key"] == "mongotap:req-42"]
    assert len(keyed) == 1 and keyed[0]["findings"] == 1, keyed
    colls = [c["collection"] for c in keyed[0]["commands"]]
    assert (colls.count("show"), colls.count("channel")) == (1, 50), colls


def test_untagged_lookups_after_an_idle_gap_do_not_join_the_key(mongotap, seed, dbname):
    seed_posts(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "windows-tag-then-idle") as client:
        posts = list(client[dbname].post.find().comment("mongotap:req-43"))
        time.sleep(3 * GAP_MS / 1000.0)  # the idle gap is the scenario here
        for p in posts:
            assert client[dbname].user.find_one({"_id": p["author_id"]})
    assert helpers.settled_findings(tap)["findings"] == []
    windows = tap.get_json("/api/windows?limit=100")["windows"]
    keyed = [w for w in windows if w["key"] == "mongotap:req-43"]
    assert len(keyed) == 1 and len(keyed[0]["commands"]) == 1, keyed


def test_untagged_lookups_after_another_key_join_that_key(mongotap, seed, dbname):
    seed_posts(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "windows-two-keys") as client:
        posts = list(client[dbname].post.find().comment("mongotap:req-44"))
        # the connection now serves another request, which reads one user
        assert client[dbname].user.find_one({}, comment="mongotap:req-45")
        for p in posts:
            assert client[dbname].user.find_one({"_id": p["author_id"]})
    assert helpers.settled_findings(tap)["findings"] == []
    windows = {w["key"]: w for w in tap.get_json("/api/windows?limit=100")["windows"]}
    assert len(windows["mongotap:req-44"]["commands"]) == 1, windows
    assert len(windows["mongotap:req-45"]["commands"]) == 21, windows


# --- 2. back-to-back page loads -----------------------------------------------------------------

def test_back_to_back_page_loads_are_one_finding_each(mongotap, seed, dbname):
    """24 listings over one connection with no idle gap between them (the window gap is far
    longer than the whole run): 24 findings of 50 lookups, one pattern of 24 occurrences."""
    seed_guide(seed, dbname)
    tap = mongotap("--window-gap-ms", 20000, "--window-max-ms", 600000)
    lazy_guide_pages(tap.uri(dbname), 24)
    doc = helpers.settled_findings(tap)
    found = findings_of(doc, "n_plus_one")
    assert len(doc["findings"]) == 24 and len(found) == 24, \
        [(f["type"], f["children"]["count"]) for f in doc["findings"]]
    for f in found:
        check_guide_finding(f, dbname)
    assert len({f["id"] for f in found}) == 24
    assert len(doc["patterns"]) == 1, json.dumps(doc["patterns"], indent=1)
    pat = doc["patterns"][0]
    assert (pat["type"], pat["occurrences"], pat["children"]["count"]) == \
        ("n_plus_one", 24, 1200), pat
    assert (pat["confidence"], pat["field"]) == ("high", "channel"), pat
    assert (pat["parent"]["collection"], pat["children"]["collection"]) == ("show", "channel")
    assert_warn_lines(tap, found, ("select_related()",))


def test_back_to_back_tagged_pages_are_one_finding_each(mongotap, seed, dbname):
    """The same run, every listing tagged with one key: still one finding per page."""
    seed_guide(seed, dbname)
    # a keyed window outlives its connection: it closes after the gap
    tap = mongotap("--window-gap-ms", 3000, "--window-max-ms", 600000)
    lazy_guide_pages(tap.uri(dbname), 6, comment="mongotap:req-46")
    doc = helpers.settled_findings(tap, timeout=20)
    found = findings_of(doc, "n_plus_one")
    assert len(doc["findings"]) == 6 and len(found) == 6, json.dumps(doc["findings"])[:3000]
    for f in found:
        check_guide_finding(f, dbname)
        assert f["window"]["key"] == "mongotap:req-46", f["window"]
    assert [p["occurrences"] for p in doc["patterns"]] == [6], doc["patterns"]


# --- 3. concurrent clients over one pool --------------------------------------------------------

CATEGORIES = 4


def seed_categories(seed, db):
    """Per category k: 8 users, 6 tags, 12 posts (author_id and tag_id of that category)."""
    users = [[ObjectId() for _ in range(8)] for _ in range(CATEGORIES)]
    tags = [[ObjectId() for _ in range(6)] for _ in range(CATEGORIES)]
    seed[db].user.insert_many([{"_id": u, "name": "u%d.%d" % (k, i)}
                               for k in range(CATEGORIES) for i, u in enumerate(users[k])])
    seed[db].tag.insert_many([{"_id": t, "label": "t%d.%d" % (k, i)}
                              for k in range(CATEGORIES) for i, t in enumerate(tags[k])])
    seed[db].post.insert_many([{"_id": ObjectId(), "category": k, "author_id": users[k][i % 8],
                                "tag_id": tags[k][i % 6]}
                               for k in range(CATEGORIES) for i in range(12)])


@pytest.mark.parametrize("pool", [4, 2])
def test_concurrent_clients_over_one_pool(mongotap, seed, dbname, pool):
    """Each thread loads pages of its own category, alternating two N+1s (each post's author;
    each post's tag), over one pymongo pool of at most `pool` connections: the pages' commands
    mix on the pooled connections. Two patterns, both high with their field; nothing else about
    users or tags."""
    clients = 4
    seed_categories(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    pages_per_client = 10
    client = pymongo.MongoClient(tap.uri(dbname), appname="windows-pool", maxPoolSize=pool)
    start = threading.Barrier(clients, timeout=30)
    errors = []

    def pages(k):
        try:
            db = client[dbname]
            start.wait()
            for page in range(pages_per_client):
                posts = list(db.post.find({"category": k}))
                assert len(posts) == 12
                if page % 2 == 0:
                    assert all(db.user.find_one({"_id": p["author_id"]}) for p in posts)
                else:
                    assert all(db.tag.find_one({"_id": p["tag_id"]}) for p in posts)
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=pages, args=(k % CATEGORIES,)) for k in range(clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        used = [c for c in tap.get_json("/api/connections")["connections"]
                if c["app_name"] == "windows-pool" and c["commands"] > 0]
        assert len(used) <= pool + 1, used  # the pool's connections and its monitor's
    finally:
        client.close()

    doc = helpers.settled_findings(tap)
    lookups = {"user": clients * pages_per_client // 2 * 12,
               "tag": clients * pages_per_client // 2 * 12}
    by_child = {}
    for p in doc["patterns"]:
        by_child.setdefault(p["children"]["collection"], []).append(p)
    assert sorted(by_child) == ["tag", "user"], json.dumps(doc["patterns"], indent=1)
    for coll, field in (("user", "author_id"), ("tag", "tag_id")):
        pats = by_child[coll]
        assert len(pats) == 1, json.dumps(pats, indent=1)
        pat = pats[0]
        assert (pat["type"], pat["confidence"], pat["field"]) == ("n_plus_one", "high", field), pat
        assert pat["parent"]["collection"] == "post", pat
        assert json.loads(pat["parent"]["shape"]) == {"category": "?"}, pat
        assert 5 <= pat["children"]["count"] <= lookups[coll], (pat, lookups)
    for f in doc["findings"]:
        # a window that holds children of a page whose parent went to another pooled connection
        # is medium (the field is not in its parent's documents); it counts in the high pattern
        assert f["type"] == "n_plus_one", f
        if f["confidence"] == "high":
            assert f["field"] == {"user": "author_id",
                                  "tag": "tag_id"}[f["children"]["collection"]], f
    assert sum(f["confidence"] == "high" for f in doc["findings"]) * 2 > len(doc["findings"]), \
        "most findings are high"
    assert_warn_lines(tap, findings_of(doc, "n_plus_one"), ("select_related()", "$in"))
