"""The loops of SPEC section 5a with the Node.js `mongodb` driver and mongoose against jongodb
through mongotap (node/loops_driver.mjs, node/loops_mongoose.mjs): a count per row, write loops
(updateOne per id, mongoose doc.save() per document) against one bulkWrite, and a repeated read;
each suggestion names the fix in that driver's words."""

import pytest

import helpers
from findings_util import GAP_MS, assert_warn_lines, only_finding, shape

NODE_WRITE_FIXES = ("bulkWrite", "updateMany", "insertMany")
COUNT_FIXES = ("$group", "$lookup")


def seed_books(seed, db):
    """7 authors, 20 books (authorId), 60 reviews (bookId): integer ids, as the scripts expect."""
    seed[db].authors.insert_many([{"_id": i, "name": "author %d" % i} for i in range(7)])
    seed[db].books.insert_many([{"_id": i, "title": "book %d" % i, "authorId": i % 7, "views": 0}
                                for i in range(20)])
    seed[db].reviews.insert_many([{"_id": i, "bookId": i % 20, "stars": 1 + i % 5}
                                  for i in range(60)])


def run_driver(tap, db, mode, *extra):
    return helpers.run_node("loops_driver.mjs", tap.uri(db), db, mode, *extra)


def run_mongoose(tap, db, mode):
    return helpers.run_node("loops_mongoose.mjs", tap.uri(db), mode)


def run_family(tap, db, family, mode):
    """The mode of loops_driver.mjs (family "node") or loops_mongoose.mjs ("mongoose")."""
    return (run_driver if family == "node" else run_mongoose)(tap, db, mode)


def check_driver(f, family):
    if family == "mongoose":
        assert "Mongoose" in f["client"]["driver"], f["client"]
    else:
        assert f["client"]["driver"].startswith("nodejs"), f["client"]
        assert "Mongoose" not in f["client"]["driver"], f["client"]
    # Python spellings have no place in a fix for a Node.js application
    for word in ("select_related", "bulk_write", "insert_many", "update_many"):
        assert word not in f["suggestion"], f["suggestion"]


# --- count per row ----------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["node", "mongoose"])
def test_count_documents_per_row(mongotap, seed, dbname, family):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    out = run_family(tap, dbname, family, "count")
    assert (out["books"], out["reviews"]) == (20, 60), out
    f = only_finding(helpers.settled_findings(tap))
    check_driver(f, family)
    assert (f["parent"]["collection"], f["parent"]["docs_returned"]) == ("books", 20), f["parent"]
    c = f["children"]
    # countDocuments sends [{$match}, {$group: {_id: 1, n: {$sum: 1}}}]
    assert (c["collection"], c["command"], c["key"], c["count"], c["distinct_values"]) == \
        ("reviews", "aggregate", "bookId", 20, 20), c
    assert shape(c)[0] == {"$match": {"bookId": "?"}} and "$group" in shape(c)[1], c
    assert (f["confidence"], f["field"]) == ("high", "_id"), f
    assert any(x in f["suggestion"] for x in COUNT_FIXES), f["suggestion"]
    assert_warn_lines(tap, [f], COUNT_FIXES)


# --- write loops ------------------------------------------------------------------------------

# (script runner, mode, the update's shape)
WRITE_LOOPS = {
    "node-updateOne": (run_driver, "update", {"$inc": {"views": "?"}}),
    "mongoose-updateOne": (run_mongoose, "update", {"$inc": {"views": "?"}}),
    "mongoose-save": (run_mongoose, "save", {"$set": {"views": "?"}}),
}


@pytest.mark.parametrize("loop", sorted(WRITE_LOOPS))
def test_write_loop(mongotap, seed, dbname, loop):
    runner, mode, update = WRITE_LOOPS[loop]
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    out = runner(tap, dbname, mode)
    assert out["books"] == 20, out
    assert seed[dbname].books.count_documents({"views": 1}) == 20
    f = only_finding(helpers.settled_findings(tap), "write_loop")
    check_driver(f, loop.split("-")[0])
    assert (f["parent"]["collection"], f["parent"]["command"], f["parent"]["docs_returned"]) == \
        ("books", "find", 20), f["parent"]
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c["count"]) == \
        ("books", "update", "_id", 20), c
    assert shape(c) == {"q": {"_id": "?"}, "u": update}, c
    assert (f["confidence"], f["field"]) == ("high", "_id"), f
    assert "bulkWrite" in f["suggestion"], f["suggestion"]
    assert_warn_lines(tap, [f], NODE_WRITE_FIXES)


@pytest.mark.parametrize("family", ["node", "mongoose"])
def test_bulk_write_is_no_finding(mongotap, seed, dbname, family):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    out = run_family(tap, dbname, family, "bulk")
    assert (out["books"], out["modified"]) == (20, 20), out
    assert helpers.settled_findings(tap)["findings"] == []


# --- repeated reads ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["node", "mongoose"])
def test_repeated_find_one(mongotap, seed, dbname, family):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    out = run_family(tap, dbname, family, "repeat")
    assert out["found"] == 6, out
    f = only_finding(helpers.settled_findings(tap), "repeated_read")
    check_driver(f, family)
    assert (f["parent"], f["field"], f["confidence"]) == (None, None, "high"), f
    c = f["children"]
    assert (c["collection"], c["command"], c["key"], c["count"]) == ("authors", "find", None, 6), c
    assert shape(c) == {"_id": "?"}, c
    assert "once per request" in f["suggestion"], f["suggestion"]
    assert_warn_lines(tap, [f], ("once per request",))


def test_repeated_find_one_below_the_threshold_is_no_finding(mongotap, seed, dbname):
    seed_books(seed, dbname)
    tap = mongotap("--window-gap-ms", GAP_MS)
    assert run_driver(tap, dbname, "repeat", 4)["found"] == 4
    assert helpers.settled_findings(tap)["findings"] == []
