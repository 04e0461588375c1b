"""GET /api/windows/ID and the windows kept, end to end: the mongoengine page with its N+1 opened
by the id its finding names (every command in order, the parent and its 50 children, bytes and
outcome of each), a failed write shown with its error, the filters and summary rows of
/api/windows, 404s that say why, and --keep-windows / MONGOTAP_KEEP_WINDOWS: the last N windows
plus the window of every finding still kept."""

import json
import subprocess

import pymongo
import pytest

import helpers
import lazy_scenario


def closed_count(tap):
    return tap.get_json("/api/stats?limit=1")["windows"]["closed"]


def page_finding(tap):
    """The show -> channel finding, once its window is closed and analysed."""
    return lazy_scenario.wait_for_finding(tap)


def one_window_per_find(tap, uri, dbname, n):
    """n windows of one find each: the next find waits until the window before it has closed."""
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        start = closed_count(tap)
        for i in range(n):
            client[dbname]["plain"].find_one({"_id": i})
            helpers.poll("window %d to close" % (i + 1),
                         lambda: closed_count(tap) >= start + i + 1)
    finally:
        client.close()


def test_the_window_of_a_finding_shows_every_command_and_its_role(mongotap, seed, dbname):
    tap = mongotap()
    lazy_scenario.seed_guide(seed, dbname)
    lazy_scenario.list_guide(tap.uri(dbname, appname="guide-page"))
    finding = page_finding(tap)
    wid = finding["window"]["id"]

    w = tap.get_json("/api/windows/%d" % wid)
    assert w["id"] == wid and w["url"] == "/api/windows/%d" % wid
    assert w["app_name"] == "guide-page" and w["driver"].startswith("PyMongo")
    assert w["open"] is False and w["segment"] is None and w["segments"] == []
    assert w["total_commands"] == 51 == len(w["commands"]) == w["commands_kept"]
    assert [f["id"] for f in w["findings"]] == [finding["id"]]
    assert w["findings"][0] == {"id": finding["id"], "type": "n_plus_one", "confidence": "high",
                                "segment": None, "parent": 0, "children": 50}

    parent, children = w["commands"][0], w["commands"][1:]
    assert (parent["command"], parent["collection"], parent["db"]) == ("find", "show", dbname)
    assert parent["role"] == "parent" and parent["finding"] == finding["id"]
    assert parent["docs"] == 50 and parent["offset_ms"] == 0
    assert [c["index"] for c in w["commands"]] == list(range(51))
    for c in children:
        assert (c["command"], c["collection"], c["shape"]) == ("find", "channel", '{"_id": "?"}')
        assert c["role"] == "child" and c["finding"] == finding["id"], c
        assert c["docs"] == 1 and c["ok"] is True and c["error"] is None, c
        assert c["bytes_in"] > 0 and c["bytes_out"] > c["bytes_in"] // 2, c
    offsets = [c["offset_ms"] for c in w["commands"]]
    assert offsets == sorted(offsets)
    assert all(c["duration_ms"] >= 0 for c in w["commands"])
    # durations and offsets to the microsecond at most
    assert all(round(c["duration_ms"], 3) == c["duration_ms"] for c in w["commands"])

    # the list row of the same window: its id, a link, its finding ids
    rows = tap.get_json("/api/windows?summary=1")["windows"]
    row = next(r for r in rows if r["id"] == wid)
    assert row["url"] == w["url"] and row["finding_ids"] == [finding["id"]] and row["findings"] == 1
    assert "commands" not in row and row["total_commands"] == 51
    full = next(r for r in tap.get_json("/api/windows")["windows"] if r["id"] == wid)
    assert full["commands"] == w["commands"]


def test_a_failed_write_shows_its_error(mongotap, dbname):
    tap = mongotap()
    client = pymongo.MongoClient(tap.uri(dbname), serverSelectionTimeoutMS=10000)
    try:
        coll = client[dbname]["dups"]
        coll.insert_one({"_id": 1})
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            coll.insert_one({"_id": 1})
        with pytest.raises(pymongo.errors.OperationFailure):
            client[dbname].command({"findAndModify": "dups", "query": {"_id": 1},
                                    "update": {"$set": {"x": 1}}, "remove": True})
    finally:
        client.close()
    rows = helpers.poll("the window of the writes", lambda: [
        r for r in tap.get_json("/api/windows")["windows"]
        if any(c["collection"] == "dups" for c in r["commands"])])
    w = tap.get_json("/api/windows/%d" % rows[0]["id"])
    cmds = [c for c in w["commands"] if c["collection"] == "dups"]
    assert [c["command"] for c in cmds] == ["insert", "insert", "findAndModify"], cmds
    assert cmds[0]["ok"] is True and cmds[0]["error"] is None and cmds[0]["error_code"] is None
    assert cmds[1]["ok"] is False and cmds[1]["error_code"] == 11000, cmds[1]
    assert cmds[1]["error"] in ("DuplicateKey", "code 11000"), cmds[1]
    assert cmds[2]["ok"] is False and cmds[2]["error"], cmds[2]


def test_windows_filters_and_the_connections_window(mongotap, seed, dbname):
    tap = mongotap()
    lazy_scenario.seed_guide(seed, dbname)
    lazy_scenario.list_guide(tap.uri(dbname, appname="guide-page"))
    finding = page_finding(tap)
    wid = finding["window"]["id"]
    client = pymongo.MongoClient(tap.uri(dbname, appname="billing"), serverSelectionTimeoutMS=10000)
    try:
        client[dbname]["invoices"].find_one({"total": {"$gt": 3}})
        helpers.poll("the invoices window", lambda: any(
            r["app_name"] == "billing" for r in tap.get_json("/api/windows?summary=1")["windows"]))
        conns = tap.get_json("/api/connections")["connections"]
        mine = [c for c in conns if c["app_name"] == "billing" and c["window"]]
        assert mine, conns
        assert mine[0]["window"]["open"] is False and mine[0]["window"]["commands"] == 1, mine
    finally:
        client.close()

    def ids(query):
        return [r["id"] for r in tap.get_json("/api/windows?summary=1&" + query)["windows"]]

    assert ids("ns=%s.channel" % dbname) == [wid]
    assert ids("shape=%24gt") != [] and wid not in ids("shape=%24gt")
    assert ids("shape=%7B%22_id%22") == [wid]  # {"_id"
    assert ids("app=guide") == [wid]
    assert ids("app=BILL") and wid not in ids("app=BILL")
    assert ids("q=" + finding["id"]) == [wid]
    assert ids("q=n_plus_one") == [wid]
    assert ids("q=invoices") and wid not in ids("q=invoices")
    assert ids("ns=channel&app=billing") == []
    assert ids("q=no+such+thing") == []


def test_unknown_windows_and_segments_are_404_json(mongotap, dbname):
    tap = mongotap()
    one_window_per_find(tap, tap.uri(dbname), dbname, 1)
    wid = tap.get_json("/api/windows")["windows"][0]["id"]
    for path, status, words in (("/api/windows/987654", 404, "no window 987654"),
                                ("/api/windows/%d?segment=2" % wid, 404, "has no segment 2"),
                                ("/api/windows/abc", 404, "no such route"),
                                ("/api/windows/%d?segment=0" % wid, 400, "segment"),
                                ("/api/windows/%d/more" % wid, 404, "no such route")):
        code, headers, body = tap.get(path)
        assert code == status, (path, code, body)
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        assert ctype.startswith("application/json"), (path, headers)
        assert words in json.loads(body)["error"], (path, body)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_keep_windows_keeps_the_last_n(mongotap, dbname, how):
    if how == "flag":
        tap = mongotap("--keep-windows", "3", "--window-gap-ms", "30")
    else:
        tap = mongotap("--window-gap-ms", "30", env={"MONGOTAP_KEEP_WINDOWS": "3"})
    one_window_per_find(tap, tap.uri(dbname), dbname, 6)
    listed = tap.get_json("/api/windows?limit=100")
    assert listed["kept"] == 3 and len(listed["windows"]) == 3, listed
    newest = [w["id"] for w in listed["windows"]]
    assert newest == sorted(newest, reverse=True)
    assert tap.get("/api/windows/%d" % newest[-1])[0] == 200
    assert tap.get("/api/windows/%d" % (newest[-1] - 1))[0] == 404


def test_the_window_of_a_kept_finding_outlives_the_last_n(mongotap, seed, dbname):
    tap = mongotap("--keep-windows", "2", "--window-gap-ms", "30")
    lazy_scenario.seed_guide(seed, dbname)
    lazy_scenario.list_guide(tap.uri(dbname))
    finding = page_finding(tap)
    one_window_per_find(tap, tap.uri(dbname), dbname, 4)
    listed = tap.get_json("/api/windows?summary=1")
    assert listed["kept"] == 3, listed
    assert listed["windows"][-1]["id"] == finding["window"]["id"]
    w = tap.get_json("/api/windows/%d" % finding["window"]["id"])
    assert len(w["commands"]) == 51 and w["findings"][0]["id"] == finding["id"]


@pytest.mark.parametrize("value", ["0", "100001", "many"])
def test_bad_keep_windows_exits_2(value):
    r = subprocess.run([helpers.mongotap_bin(), "--keep-windows", value], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--keep-windows" in lines[0], r.stderr
