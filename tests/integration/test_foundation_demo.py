"""The TV guide demo (examples/tvguide) through mongotap: the lazy listing page costs 1 + 50
finds, the select_related() one 1 + 1, both render the same guide, and mongotap accounts the
same commands the driver saw."""

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
