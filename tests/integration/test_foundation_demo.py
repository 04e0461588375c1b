"""The TV guide demo (examples/tvguide) through mongotap: the lazy listing page costs 1 + 50
finds, the select_related() one 1 + 1, both render the same guide, and mongotap accounts the
same commands the driver saw; the "mark all watched" page is a write loop and a repeated read,
its fixed version neither."""

import os
import re
import sys

import pytest
from mongoengine import disconnect

import helpers

sys.path.insert(0, os.path.join(helpers.ROOT, "examples", "tvguide"))
import app as tvguide_app  # noqa: E402
import seed as tvguide_seed  # noqa: E402

ROW_RE = re.compile(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>")


@pytest.fixture
def guide(mongotap, dbname):
    """(mongotap, Flask test client) for a freshly seeded guide behind mongotap."""
    tap = mongotap()
    uri = tap.uri(dbname)
    assert tvguide_seed.seed(uri) == (20, 50)
    app = tvguide_app.create_app(uri)
    yield tap, app.test_client()
    disconnect()


def rows(resp):
    assert resp.status_code == 200
    return ROW_RE.findall(resp.get_data(as_text=True))


def test_lazy_page_is_1_plus_n_and_select_related_is_1_plus_1(guide):
    _, client = guide
    lazy = client.get("/")
    eager = client.get("/?select_related=1")
    assert lazy.headers["X-Mongo-Finds"] == "51", lazy.headers
    assert lazy.headers["X-Mongo-Commands"] == "51"
    assert eager.headers["X-Mongo-Finds"] == "2", eager.headers
    assert eager.headers["X-Mongo-Commands"] == "2"
    lazy_rows, eager_rows = rows(lazy), rows(eager)
    assert len(lazy_rows) == 50
    assert lazy_rows == eager_rows
    assert len({channel for _, _, channel in lazy_rows}) == 20
    assert lazy_rows[0] == ("06:00", "Morning News", "Northwind One")


def test_mongotap_accounts_what_the_driver_sent(guide):
    tap, client = guide
    assert tap.get_json("/api/stats")["commands"] > 0
    before = tap.get_json("/api/stats?limit=1000")
    client.get("/")
    client.get("/?select_related=1")
    after = tap.get_json("/api/stats?limit=1000")

    def finds(stats, collection):
        return sum(s["count"] for s in stats["shapes"]
                   if s["collection"] == collection and s["command"] == "find")

    assert finds(after, "channel") - finds(before, "channel") == 51  # 50 lazy + 1 $in
    assert finds(after, "show") - finds(before, "show") == 2
    single = [s for s in after["shapes"]
              if s["collection"] == "channel" and s["command"] == "find"
              and s["shape"].replace(" ", "") == '{"_id":"?"}']
    assert single and single[0]["count"] >= 50 and single[0]["docs_returned"] >= 50, single

    apps = [c.get("app_name") for c in tap.get_json("/api/connections")["connections"]]
    assert "tvguide" in apps, apps


WATCHED_ROW_RE = re.compile(r"<tr>" + r"<td>([^<]*)</td>" * 4 + r"</tr>")


def test_mark_all_watched_is_a_write_loop_and_a_repeated_read(guide):
    """The second page: one save() per show and the viewer read for every row. mongotap finds a
    write loop and a repeated read there (SPEC 5a); the fixed page is 4 commands and no finding."""
    tap, client = guide
    assert helpers.settled_findings(tap)["findings"] == []  # seeding the guide is no finding
    lazy = client.post("/watched")
    assert lazy.status_code == 200
    assert (lazy.headers["X-Mongo-Commands"], lazy.headers["X-Mongo-Finds"],
            lazy.headers["X-Mongo-Updates"]) == ("102", "52", "50"), lazy.headers
    doc = helpers.settled_findings(tap)
    by_type = {f["type"]: f for f in doc["findings"]}
    assert len(doc["findings"]) == 2 and set(by_type) == {"write_loop", "repeated_read"}, doc

    w = by_type["write_loop"]
    assert (w["parent"]["collection"], w["parent"]["command"], w["parent"]["docs_returned"]) == \
        ("show", "find", 50), w["parent"]
    assert (w["children"]["collection"], w["children"]["command"], w["children"]["key"],
            w["children"]["count"]) == ("show", "update", "_id", 50), w["children"]
    assert (w["confidence"], w["field"]) == ("high", "_id"), w
    assert "bulk_write" in w["suggestion"] or "update_many" in w["suggestion"], w["suggestion"]

    r = by_type["repeated_read"]
    assert (r["parent"], r["field"], r["confidence"]) == (None, None, "high"), r
    assert (r["children"]["collection"], r["children"]["command"], r["children"]["count"]) == \
        ("viewer", "find", 50), r["children"]
    assert "once per request" in r["suggestion"], r["suggestion"]

    fixed = client.post("/watched?fixed=1")
    assert (fixed.headers["X-Mongo-Commands"], fixed.headers["X-Mongo-Finds"],
            fixed.headers["X-Mongo-Updates"]) == ("4", "3", "1"), fixed.headers
    lazy_rows = WATCHED_ROW_RE.findall(lazy.get_data(as_text=True))
    assert len(lazy_rows) == 50 and {row[3] for row in lazy_rows} == {"Sam Viewer"}, lazy_rows[:3]
    assert WATCHED_ROW_RE.findall(fixed.get_data(as_text=True)) == lazy_rows
    assert helpers.settled_findings(tap)["findings"] == doc["findings"]  # nothing new
