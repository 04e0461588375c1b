"""The loops of SPEC section 5a end to end, with pymongo and mongoengine against jongodb through
mongotap (the Node.js driver and mongoose are in test_detect_node.py): counts and distincts per
row, one $in per document, compound lookups, nested N+1, write loops and repeated reads, each
with its traps (the batched fix, T-1 repetitions, values that differ), and for every finding its
exact figures, its suggestion for the driver and its warn line on stderr. The threshold T is the
default, 5."""

import json

import pytest
from bson import ObjectId
from bson.son import SON
from mongoengine import (BooleanField, Document, ListField, ReferenceField, StringField, connect,
                         disconnect)
from pymongo import InsertOne, UpdateOne

import helpers
from findings_util import (GAP_MS, assert_no_values, assert_reported, assert_warn_lines,
                           findings_of, only_finding, shape, tap_client)

T = 5  # mongotap's default --n1-threshold


# --- data --------------------------------------------------------------------------------------

class Blog:
    """Ids of a small blog seeded straight into jongodb: 10 users, 8 tags, 20 posts (author_id,
    two or three tag ids in tags), 60 comments (post_id), 12 logins (token)."""

    def __init__(self, seed, db):
        self.users = [ObjectId() for _ in range(10)]
        self.tags = [ObjectId() for _ in range(8)]
        self.posts = [ObjectId() for _ in range(20)]
        self.tokens = ["tok-%s" % ObjectId() for _ in range(12)]
        self.post_tags = [[self.tags[i % 8], self.tags[(i + 1) % 8]] +
                          ([self.tags[(i + 3) % 8]] if i % 2 else []) for i in range(20)]
        d = seed[db]
        d.user.insert_many([{"_id": u, "name": "user %d" % i, "email": "user%d@example.com" % i}
                            for i, u in enumerate(self.users)])
        d.tag.insert_many([{"_id": t, "label": "tag %d" % i} for i, t in enumerate(self.tags)])
        d.post.insert_many([{"_id": p, "title": "post %d" % i, "author_id": self.users[i % 10],
                             "tags": self.post_tags[i], "views": 0}
                            for i, p in enumerate(self.posts)])
        d.comment.insert_many([{"_id": ObjectId(), "post_id": self.posts[i % 20],
                                "author": "user%d@example.com" % ((i * 3) % 10)}
                               for i in range(60)])
        d.login.insert_many([{"_id": ObjectId(), "token": t} for t in self.tokens])

    def values(self):
        """Values that must never show up in a finding or a log line."""
        return [str(v) for v in self.users[:3] + self.posts[:3] + self.tags[:3]] + \
            self.tokens[:3] + ["user1@example.com"]


@pytest.fixture
def blog(seed, dbname):
    return Blog(seed, dbname)


# --- 1. counts and distincts per row (children.command names them) ----------------------------

def count_documents(db, pid):
    return db.comment.count_documents({"post_id": pid})


def legacy_count(db, pid):
    return db.command(SON([("count", "comment"), ("query", {"post_id": pid})]))["n"]


def distinct(db, pid):
    return len(db.comment.distinct("author", {"post_id": pid}))


# (per-row call, the command it sends, the children's shape, the sum over the 20 posts)
COUNT_LOOPS = {
    "count_documents": (count_documents, "aggregate",
                        [{"$match": {"post_id": "?"}},
                         {"$group": {"_id": "?", "n": {"$sum": "?"}}}], 60),
    "count": (legacy_count, "count", {"post_id": "?"}, 60),
    "distinct": (distinct, "distinct", {"post_id": "?"}, 20),  # each post's 3 comments: 1 author
}


@pytest.mark.parametrize("kind", sorted(COUNT_LOOPS))
def test_count_per_row_is_an_n_plus_one(mongotap, blog, dbname, kind):
    per_row, command, child_shape, total = COUNT_LOOPS[kind]
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-count") as client:
        posts = list(client[dbname].post.find())
        counts = [per_row(client[dbname], p["_id"]) for p in posts]
    assert len(posts) == 20 and sum(counts) == total, counts
    doc = helpers.settled_findings(tap)
    f = only_finding(doc)
    assert (f["parent"]["collection"], f["parent"]["command"], f["parent"]["docs_returned"]) == \
        ("post", "find", 20), f["parent"]
    c = f["children"]
    assert (c["collection"], c["command"], c["key"]) == ("comment", command, "post_id"), c
    assert shape(c) == child_shape, c
    assert (c["count"], c["distinct_values"]) == (20, 20), c
    assert (f["confidence"], f["field"], f["matched"]) == ("high", "_id", 20), f
    # one aggregate grouped by the key instead of one count per document
    fixes = ("$group", "$lookup")
    assert any(x in f["suggestion"] for x in fixes), f["suggestion"]
    assert_reported(tap, [f], fixes, blog.values())


@pytest.mark.parametrize("kind", sorted(COUNT_LOOPS))
def test_count_per_row_below_the_threshold_is_no_finding(mongotap, blog, dbname, kind):
    per_row = COUNT_LOOPS[kind][0]
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-count-few") as client:
        posts = list(client[dbname].post.find())
        for p in posts[:T - 1]:
            per_row(client[dbname], p["_id"])
    assert helpers.settled_findings(tap)["findings"] == []


def test_one_grouped_count_is_no_finding(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-count-grouped") as client:
        posts = list(client[dbname].post.find())
        grouped = list(client[dbname].comment.aggregate([
            {"$match": {"post_id": {"$in": [p["_id"] for p in posts]}}},
            {"$group": {"_id": "$post_id", "n": {"$sum": 1}}}]))
    assert sum(g["n"] for g in grouped) == 60
    assert helpers.settled_findings(tap)["findings"] == []


# --- 2. one $in per document: a ListField(ReferenceField) dereferenced post by post -----------

ME_ALIAS = "mongotap_loops"


class LoopTag(Document):
    label = StringField()
    meta = {"collection": "tag", "db_alias": ME_ALIAS, "auto_create_index": False}


class LoopPost(Document):
    title = StringField()
    tags = ListField(ReferenceField(LoopTag))
    meta = {"collection": "post", "db_alias": ME_ALIAS, "auto_create_index": False,
            "strict": False}


def list_post_tags(uri, related, rows=None):
    """The labels of each post's tags through mongoengine, lazily or with select_related()."""
    connect(host=uri, alias=ME_ALIAS, uuidRepresentation="standard")
    try:
        posts = LoopPost.objects
        if related:
            posts = posts.select_related()
        return [[t.label for t in post.tags] for post in list(posts)[:rows]]
    finally:
        disconnect(alias=ME_ALIAS)


def test_in_per_document_is_an_n_plus_one(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    labels = list_post_tags(tap.uri(dbname), related=False)
    assert [len(x) for x in labels] == [len(t) for t in blog.post_tags]
    f = only_finding(helpers.settled_findings(tap))
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("post", 20), f["parent"]
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c.get("in_lists")) == \
        ("tag", "find", "_id", True), c
    assert shape(c) == {"_id": {"$in": ["?"]}}, c
    # one child per post; the values looked up are the 8 tags
    assert (c["count"], c["distinct_values"]) == (20, 8), c
    assert (f["confidence"], f["field"]) == ("high", "tags"), f
    assert "select_related()" in f["suggestion"], f["suggestion"]
    assert_reported(tap, [f], ("select_related()",), blog.values())


def test_in_per_document_below_the_threshold_is_no_finding(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    # list(posts) reads all 20; only the first T-1 have their tags dereferenced
    assert len(list_post_tags(tap.uri(dbname), related=False, rows=T - 1)) == T - 1
    assert helpers.settled_findings(tap)["findings"] == []


def test_select_related_one_batched_in_is_no_finding(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    labels = list_post_tags(tap.uri(dbname), related=True)
    assert [len(x) for x in labels] == [len(t) for t in blog.post_tags]
    assert helpers.settled_findings(tap)["findings"] == []
    lookups = [c for w in tap.get_json("/api/windows?limit=100")["windows"] for c in w["commands"]
               if c["collection"] == "tag"]
    assert len(lookups) == 1 and lookups[0]["docs"] == 8, lookups  # one $in carrying every tag


# --- 3. compound lookups ----------------------------------------------------------------------

def seed_likes(seed, db, blog):
    me = blog.users[0]
    seed[db].like.insert_many([{"_id": ObjectId(), "user": me if i % 2 else blog.users[1 + i % 9],
                                "post": p} for i, p in enumerate(blog.posts)])
    return me


def test_compound_lookup_with_one_changing_field(mongotap, seed, blog, dbname):
    me = seed_likes(seed, dbname, blog)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-likes") as client:
        posts = list(client[dbname].post.find())
        liked = [client[dbname].like.find_one({"user": me, "post": p["_id"]}) for p in posts]
    assert sum(1 for x in liked if x) == 10, liked
    f = only_finding(helpers.settled_findings(tap))
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c.get("constant_keys")) == \
        ("like", "find", "post", ["user"]), c
    assert shape(c) == {"user": "?", "post": "?"}, c
    assert (c["count"], c["distinct_values"]) == (20, 20), c
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("post", 20), f["parent"]
    assert (f["confidence"], f["field"], f["matched"]) == ("high", "_id", 20), f
    assert "$in" in f["suggestion"], f["suggestion"]
    assert_reported(tap, [f], ("$in",), blog.values())


def test_compound_lookup_with_both_fields_changing_is_no_finding(mongotap, seed, blog, dbname):
    seed_likes(seed, dbname, blog)
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-likes-both") as client:
        posts = list(client[dbname].post.find())
        for p in posts:  # the author and the post change from row to row
            client[dbname].like.find_one({"user": p["author_id"], "post": p["_id"]})
    assert helpers.settled_findings(tap)["findings"] == []


# --- 4. nested N+1: show -> channel -> network --------------------------------------------------

class LoopNetwork(Document):
    name = StringField()
    meta = {"collection": "network", "db_alias": ME_ALIAS, "auto_create_index": False}


class LoopChannel(Document):
    name = StringField()
    network = ReferenceField(LoopNetwork)
    meta = {"collection": "channel", "db_alias": ME_ALIAS, "auto_create_index": False}


class LoopShow(Document):
    title = StringField()
    channel = ReferenceField(LoopChannel)
    watched = BooleanField(default=False)
    meta = {"collection": "show", "db_alias": ME_ALIAS, "auto_create_index": False}


def seed_networks(seed, db, n_shows=50):
    """5 networks, 20 channels (each on a network), n_shows shows (each on a channel)."""
    networks = [ObjectId() for _ in range(5)]
    channels = [ObjectId() for _ in range(20)]
    seed[db].network.insert_many([{"_id": n, "name": "net %d" % i} for i, n in enumerate(networks)])
    seed[db].channel.insert_many([{"_id": c, "name": "ch %d" % i, "network": networks[i % 5]}
                                  for i, c in enumerate(channels)])
    seed[db].show.insert_many([{"_id": ObjectId(), "title": "show %d" % i,
                                "channel": channels[i % 20], "watched": False}
                               for i in range(n_shows)])
    return networks, channels


def test_nested_n_plus_one_is_two_findings(mongotap, seed, dbname):
    networks, channels = seed_networks(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    connect(host=tap.uri(dbname), alias=ME_ALIAS, uuidRepresentation="standard")
    try:
        names = [show.channel.network.name for show in LoopShow.objects]
    finally:
        disconnect(alias=ME_ALIAS)
    assert len(names) == 50 and len(set(names)) == 5
    doc = helpers.settled_findings(tap)
    found = findings_of(doc, "n_plus_one")
    assert len(doc["findings"]) == 2 and len(found) == 2, json.dumps(doc, indent=1)
    outer = [f for f in found if f["children"]["collection"] == "channel"]
    inner = [f for f in found if f["children"]["collection"] == "network"]
    assert len(outer) == 1 and len(inner) == 1, found
    outer, inner = outer[0], inner[0]

    assert outer.get("nested_in") is None, outer
    assert (outer["parent"]["collection"], outer["parent"]["docs_returned"]) == ("show", 50)
    assert (outer["children"]["count"], outer["children"]["distinct_values"]) == (50, 20)
    assert (outer["confidence"], outer["field"]) == ("high", "channel"), outer

    assert inner.get("nested_in") == outer["id"], (inner, outer["id"])
    p = inner["parent"]
    # the outer finding's children act as the parent: 50 channel finds of one document each
    assert (p["collection"], p["command"], p["docs_returned"]) == ("channel", "find", 50), p
    assert shape(p) == shape(outer["children"]) == {"_id": "?"}, p
    c = inner["children"]
    assert (c["collection"], c["command"], c["key"], c["count"], c["distinct_values"]) == \
        ("network", "find", "_id", 50, 5), c
    assert (inner["confidence"], inner["field"], inner["matched"]) == ("high", "network", 50)
    assert inner["window"]["id"] == outer["window"]["id"], (inner["window"], outer["window"])
    assert "select_related()" in inner["suggestion"], inner["suggestion"]
    assert_reported(tap, [outer, inner], ("select_related()",),
                    [str(x) for x in networks + channels[:3]])


# --- 5. write loops ---------------------------------------------------------------------------

# what a write-loop suggestion names for PyMongo
PY_WRITE_FIXES = ("bulk_write", "update_many", "insert_many", "delete_many")


def write_loop_finding(tap):
    f = only_finding(helpers.settled_findings(tap), "write_loop")
    assert any(x in f["suggestion"] for x in PY_WRITE_FIXES), f["suggestion"]
    return f


def test_update_one_by_id_after_a_read_is_a_write_loop(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-update") as client:
        posts = list(client[dbname].post.find())
        for p in posts:
            client[dbname].post.update_one({"_id": p["_id"]}, {"$inc": {"views": 1}})
    f = write_loop_finding(tap)
    assert (f["parent"]["collection"], f["parent"]["command"], f["parent"]["docs_returned"]) == \
        ("post", "find", 20), f["parent"]
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c["count"]) == ("post", "update", "_id", 20), c
    assert shape(c)["q"] == {"_id": "?"}, c
    assert (f["confidence"], f["field"]) == ("high", "_id"), f
    assert "bulk_write" in f["suggestion"] or "update_many" in f["suggestion"], f["suggestion"]
    assert_reported(tap, [f], PY_WRITE_FIXES, blog.values())


def test_delete_one_by_key_without_a_read_is_a_medium_write_loop(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-delete") as client:
        for t in blog.tokens:
            assert client[dbname].login.delete_one({"token": t}).deleted_count == 1
    f = write_loop_finding(tap)
    assert f["parent"] is None, f
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c["count"]) == \
        ("login", "delete", "token", 12), c
    assert (f["confidence"], f["field"]) == ("medium", None), f
    assert_reported(tap, [f], PY_WRITE_FIXES, blog.values())


def test_find_one_and_update_by_key_is_a_write_loop(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-fam") as client:
        logins = list(client[dbname].login.find())
        for s in logins:
            assert client[dbname].login.find_one_and_update({"token": s["token"]},
                                                            {"$set": {"seen": True}})
    f = write_loop_finding(tap)
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("login", 12), f
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c["count"]) == \
        ("login", "findAndModify", "token", 12), c
    assert (f["confidence"], f["field"]) == ("high", "token"), f
    assert_reported(tap, [f], PY_WRITE_FIXES, blog.values())


def test_insert_one_in_a_loop_is_a_write_loop(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-insert") as client:
        for i in range(12):
            client[dbname].event.insert_one({"n": i, "who": "user1@example.com"})
    f = write_loop_finding(tap)
    assert f["parent"] is None, f
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c["count"]) == ("event", "insert", None, 12), c
    assert (f["confidence"], f["field"]) == ("medium", None), f
    assert "insert_many" in f["suggestion"], f["suggestion"]
    assert_reported(tap, [f], ("insert_many",), blog.values())


def test_mongoengine_save_per_document_is_a_write_loop(mongotap, seed, dbname):
    seed_networks(seed, dbname, n_shows=20)
    tap = mongotap("--window-gap-ms", GAP_MS)
    connect(host=tap.uri(dbname), alias=ME_ALIAS, uuidRepresentation="standard")
    try:
        for show in LoopShow.objects:
            show.watched = True
            show.save()
    finally:
        disconnect(alias=ME_ALIAS)
    assert seed[dbname].show.count_documents({"watched": True}) == 20
    f = write_loop_finding(tap)
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("show", 20), f["parent"]
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c["count"]) == ("show", "update", "_id", 20), c
    assert (f["confidence"], f["field"]) == ("high", "_id"), f
    assert "bulk_write" in f["suggestion"] or "update_many" in f["suggestion"], f["suggestion"]
    assert_warn_lines(tap, [f], PY_WRITE_FIXES)


# The batched forms: one command with many statements never counts.
BATCHES = {
    "bulk_write": lambda db, posts: db.post.bulk_write(
        [UpdateOne({"_id": p["_id"]}, {"$inc": {"views": 1}}) for p in posts]),
    "insert_many": lambda db, posts: db.event.insert_many([{"n": i} for i in range(len(posts))]),
    "update_many": lambda db, posts: db.post.update_many(
        {"_id": {"$in": [p["_id"] for p in posts]}}, {"$inc": {"views": 1}}),
    "bulk_write_inserts": lambda db, posts: db.event.bulk_write(
        [InsertOne({"n": i}) for i in range(len(posts))]),
}


@pytest.mark.parametrize("batch", sorted(BATCHES))
def test_batched_writes_are_no_finding(mongotap, blog, dbname, batch):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-batch") as client:
        posts = list(client[dbname].post.find())
        BATCHES[batch](client[dbname], posts)
    assert helpers.settled_findings(tap)["findings"] == []


def test_writes_below_the_threshold_are_no_finding(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-write-few") as client:
        posts = list(client[dbname].post.find())
        for p in posts[:T - 1]:
            client[dbname].post.update_one({"_id": p["_id"]}, {"$inc": {"views": 1}})
        for i in range(T - 1):
            client[dbname].event.insert_one({"n": i})
    assert helpers.settled_findings(tap)["findings"] == []
    # the boundary: T updates are a finding
    with tap_client(tap, "loops-write-t") as client:
        posts = list(client[dbname].post.find())
        for p in posts[:T]:
            client[dbname].post.update_one({"_id": p["_id"]}, {"$inc": {"views": 1}})
    f = write_loop_finding(tap)
    assert (f["client"]["app_name"], f["children"]["count"]) == ("loops-write-t", T), f


# --- 6. repeated reads ------------------------------------------------------------------------

def repeated_read_finding(tap):
    f = only_finding(helpers.settled_findings(tap), "repeated_read")
    assert (f["parent"], f["field"], f["confidence"]) == (None, None, "high"), f
    assert f["children"]["key"] is None, f["children"]
    assert "once per request" in f["suggestion"], f["suggestion"]
    return f


def test_same_find_one_t_times_is_a_repeated_read(mongotap, blog, dbname):
    me = blog.users[3]
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-repeat") as client:
        for _ in range(T):
            assert client[dbname].user.find_one({"_id": me})["name"] == "user 3"
    f = repeated_read_finding(tap)
    c = f["children"]
    assert (c["collection"], c["command"], c["count"]) == ("user", "find", T), c
    assert shape(c) == {"_id": "?"}, c
    assert_reported(tap, [f], ("once per request",), blog.values())


def test_same_query_with_sort_and_limit_repeated_is_a_repeated_read(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-repeat-list") as client:
        for _ in range(8):
            latest = list(client[dbname].post.find({"author_id": blog.users[1]})
                          .sort("title", -1).limit(2))
            assert len(latest) == 2
    f = repeated_read_finding(tap)
    c = f["children"]
    assert (c["collection"], c["command"], c["count"]) == ("post", "find", 8), c
    assert shape(c) == {"author_id": "?"}, c


def test_same_find_one_t_minus_1_times_is_no_finding(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-repeat-few") as client:
        for _ in range(T - 1):
            assert client[dbname].user.find_one({"_id": blog.users[3]})
    assert helpers.settled_findings(tap)["findings"] == []


def test_same_shape_with_other_values_is_no_repeated_read(mongotap, blog, dbname):
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-other-values") as client:
        for u in blog.users:  # ten lookups of one shape, ten values, no parent read
            assert client[dbname].user.find_one({"_id": u})
        for n in range(1, 9):  # one filter, eight limits: eight different questions
            assert len(list(client[dbname].post.find({"author_id": blog.users[1]}).limit(n)))
    assert helpers.settled_findings(tap)["findings"] == []


def test_n_plus_one_over_one_value_is_only_an_n_plus_one(mongotap, seed, dbname):
    """Every post by the same author: the N+1's children all look up one id. That is one
    n_plus_one finding, not also a repeated_read."""
    author = ObjectId()
    seed[dbname].user.insert_one({"_id": author, "name": "solo"})
    seed[dbname].post.insert_many([{"_id": ObjectId(), "author_id": author} for _ in range(12)])
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-one-author") as client:
        posts = list(client[dbname].post.find())
        for p in posts:
            assert client[dbname].user.find_one({"_id": p["author_id"]})
    doc = helpers.settled_findings(tap)
    assert findings_of(doc, "repeated_read") == [], doc
    f = only_finding(doc)
    c = f["children"]
    assert (c["collection"], c["key"], c["count"], c["distinct_values"]) == \
        ("user", "_id", 12, 1), c
    assert (f["confidence"], f["field"], f["matched"]) == ("high", "author_id", 12), f
    assert_no_values(f, [str(author)])


def test_current_user_per_row_is_reported_once(mongotap, blog, dbname):
    """The current user read again for every row of a listing: the user is in none of the listed
    documents. SPEC 5a says children of an n_plus_one are not reported again as repeated reads;
    whichever type mongotap picks, the loop is one finding, not two."""
    me = blog.users[9]
    tap = mongotap("--window-gap-ms", GAP_MS)
    with tap_client(tap, "loops-current-user") as client:
        posts = list(client[dbname].post.find({"author_id": {"$ne": me}}))
        for _ in posts:
            assert client[dbname].user.find_one({"_id": me})
    assert len(posts) == 18
    doc = helpers.settled_findings(tap)
    assert len(doc["findings"]) == 1, json.dumps(doc, indent=1)
    f = doc["findings"][0]
    assert f["type"] in ("n_plus_one", "repeated_read"), f
    assert (f["children"]["collection"], f["children"]["count"]) == ("user", 18), f
